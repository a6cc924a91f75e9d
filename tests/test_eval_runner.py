"""The evaluation runner (run_evaluation.py, aande_eval/) end to end on the small test checkpoint with the tiny
CLIP and BLIP folders: 2 prompts x 2 seeds x {standard, A&E}, in one process, in two processes under
torch.distributed.run (gloo), and killed mid-run then resumed. Each run is a real subprocess, as a user starts it
(through tests/harness/evaluate.py, which imports the dev host's ComfyUI first)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.host import find_comfyui
from harness.metric_models import tiny_blip_folder, tiny_clip_folder

ROOT = Path(__file__).resolve().parents[1]
EVALUATE = ROOT / "tests" / "harness" / "evaluate.py"
PROMPTS = {"animals": ["a cat and a frog"], "objects": ["a red car and a blue bench"]}
METRICS = ("clip_full", "clip_min_half", "blip_similarity")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_checkpoint):
    root = tmp_path_factory.mktemp("runner")
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    return {"root": root, "prompts": prompts, "ckpt": small_checkpoint,
            "clip": tiny_clip_folder(root / "clip"), "blip": tiny_blip_folder(root / "blip")}


def runner_args(setup, out, *extra):
    return [str(EVALUATE), "--comfyui", str(find_comfyui()), "--ckpt", str(setup["ckpt"]), "--out", str(out),
            "--prompts", str(setup["prompts"]), "--seeds", "2", "--batch", "2", "--size", "64", "--steps", "4",
            "--clip-model", str(setup["clip"]), "--blip-model", str(setup["blip"]), "--cpu", *extra]


def env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run(args, processes=1):
    launcher = [sys.executable] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port", "29533"]
    done = subprocess.run(launcher + args, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def merged(out):
    return [json.loads(t) for t in (out / "results.jsonl").read_text().splitlines()]


def pixels(out, line):
    return np.asarray(Image.open(out / line["image"]), dtype=np.int16)


@pytest.fixture(scope="module")
def single(setup):
    out = setup["root"] / "single"
    return out, run(runner_args(setup, out))


def test_one_process_writes_every_image_line_table_and_figure(single):
    out, log = single
    lines = merged(out)
    expected = [(p, s, m) for c in PROMPTS for p in PROMPTS[c] for s in (0, 1) for m in ("standard", "ae")]
    assert sorted((l["prompt"], l["seed"], l["method"]) for l in lines) == sorted(expected)
    for line in lines:
        assert (out / line["image"]).is_file()
        assert pixels(out, line).shape == (64, 64, 3)
        assert all(isinstance(line["metrics"][m], float) for m in METRICS), line["metrics"]
        assert isinstance(line["caption"], str) and line["caption"]
        assert line["category"] == next(c for c in PROMPTS if line["prompt"] in PROMPTS[c])
        assert line["settings"]["sampling"]["steps"] == 4
        assert (line["settings"]["ae"] is None) == (line["method"] == "standard")
        assert ("ae_loss_first" in line["metrics"]) == (line["method"] == "ae")
    # A&E changes the images; the same seed's standard and A&E images differ
    by_key = {(l["prompt"], l["seed"], l["method"]): l for l in lines}
    for prompt, seed, _ in expected:
        assert np.abs(pixels(out, by_key[prompt, seed, "standard"]) - pixels(out, by_key[prompt, seed, "ae"])).max() > 0
    assert "ETA" in log and "images/min" in log
    for name in ("table1.md", "table1.csv", "table1.json", "clip_figure.png"):
        assert (out / name).stat().st_size > 0, name
    assert Image.open(out / "clip_figure.png").size[0] > 100


def test_the_table_is_the_mean_over_prompts_of_the_lines(single):
    out, _ = single
    lines = merged(out)
    summary = json.loads((out / "table1.json").read_text())
    for method in ("standard", "ae"):
        for metric in METRICS:
            per_prompt = []
            for category, prompts in PROMPTS.items():
                values = [l["metrics"][metric] for l in lines if l["method"] == method and l["category"] == category]
                assert summary[category][method][metric]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
                per_prompt.append(np.mean(values))
            cell = summary["all"][method][metric]
            assert cell["mean"] == pytest.approx(np.mean(per_prompt), abs=1e-12)
            # the 95% interval over the 2 prompts: 1.96 standard errors
            assert cell["ci95"] == pytest.approx(1.96 * np.std(per_prompt, ddof=1) / np.sqrt(2), abs=1e-12)
            assert (cell["prompts"], cell["images"]) == (2, 4)
    csv_rows = (out / "table1.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 3 * 2  # header, (animals, objects, all) x 2 methods


def test_a_seed_gives_the_same_image_in_a_batch_of_one(setup, single):
    """Seed 1 alone (batch 1, first seed 1) against seed 1 in the batch of two: the same noise, the same image
    up to floating-point rounding of the batched convolutions."""
    out_single, _ = single
    out = setup["root"] / "seed1"
    args = runner_args(setup, out, "--metrics", "none", "--categories", "animals")
    args[args.index("--seeds") + 1], args[args.index("--batch") + 1] = "1", "1"
    run(args + ["--first-seed", "1"])
    alone = {l["method"]: l for l in merged(out)}
    paired = {l["method"]: l for l in merged(out_single) if l["seed"] == 1 and l["category"] == "animals"}
    for method in ("standard", "ae"):
        assert np.abs(pixels(out, alone[method]) - pixels(out_single, paired[method])).max() <= 1, method


def test_two_processes_under_torchrun_give_the_single_process_results(setup, single):
    out_single, _ = single
    out = setup["root"] / "two"
    log = run(runner_args(setup, out), processes=2)
    assert "[eval 0/2]" in log and "[eval 1/2]" in log
    assert (out / "results-rank0.jsonl").is_file() and (out / "results-rank1.jsonl").is_file()
    one, two = merged(out_single), merged(out)
    assert [(l["prompt"], l["seed"], l["method"]) for l in two] == [(l["prompt"], l["seed"], l["method"]) for l in one]
    for a, b in zip(one, two):
        assert b["metrics"] == pytest.approx(a["metrics"], abs=1e-6), a["image"]
        assert b["caption"] == a["caption"]
        assert np.array_equal(pixels(out_single, a), pixels(out, b)), a["image"]


def test_a_killed_run_resumes_without_recomputing_or_losing_a_line(setup, single):
    out_single, _ = single
    out = setup["root"] / "killed"
    rank_file = out / "results-rank0.jsonl"
    proc = subprocess.Popen([sys.executable] + runner_args(setup, out), env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (rank_file.is_file() and rank_file.read_text().count("\n") >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "the runner wrote no batch in 300 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    written = rank_file.read_text()
    finished = written.count("\n")
    assert 2 <= finished < 8, "kill the run between its first and last batch"
    with open(rank_file, "a") as f:   # a line the kill cut off half-way
        f.write('{"prompt": "a cat and a fr')

    log = run(runner_args(setup, out))
    assert f"{finished // 2} already done" in log
    after = rank_file.read_text()
    assert after.startswith(written), "a resumed run rewrote what was written"
    assert after.count("\n") == 8 + 1, "each image once, plus the cut line on its own"
    for a, b in zip(merged(out_single), merged(out)):
        assert b["metrics"] == pytest.approx(a["metrics"], abs=1e-6)
        assert np.array_equal(pixels(out_single, a), pixels(out, b)), a["image"]


def test_a_resume_with_other_settings_is_refused(setup, single):
    out, _ = single
    args = runner_args(setup, out)
    args[args.index("--steps") + 1] = "5"
    done = subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert done.returncode != 0
    assert "holds a run with other settings (sampling differ)" in done.stderr

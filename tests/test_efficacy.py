"""A&E on the committed toy model (toyworld/weights/), CPU-sized: the benchmark's first held-out prompt, "a circle
and a square" (held-out shape pair; the first prompt of the first category of world.BENCHMARK_PROMPTS, a choice fixed
by the protocol, not by its outcome), seeds 0 and 1, standard and A&E with the benchmark's settings (the paper's,
attention_res latent/2), 50 ddim steps at 256x256 as on the GPU.

Checked against the GPU benchmark's own lines (toyworld/results/benchmark_latent2.jsonl, an H200 run of the
evaluation runner): the judge's verdicts per image, and A&E's loss at its first and last step. On top: the loss falls
over the A&E steps, and the circle's attention map peaks on the circle. docs/efficacy.md says what the run shows
(here too: A&E meets its objective and loses both objects) and why.

The centred model (toyworld_centred.safetensors, the toy VAE's zero latent on the world's mean background): its
standard run of the same prompt and seeds, against its GPU benchmark's lines (toyworld/results/centred/), and its
backgrounds against the first model's, which start from a mid-grey zero latent.
"""
import json
from pathlib import Path

import pytest
import torch

from harness.host import import_comfy

import_comfy()
from aande_pack.aande_core.config import AESettings  # noqa: E402
from aande_pack.aande_eval.grid import make_batches  # noqa: E402
from aande_pack.aande_eval.prompts import Prompt  # noqa: E402
from aande_pack.aande_eval.sampling import Sampler, SamplingSettings  # noqa: E402
from aande_pack.toyworld import judge, world  # noqa: E402
from aande_pack.toyworld import model as toy_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "toyworld" / "weights" / "toyworld.safetensors"
GPU_LINES = ROOT / "toyworld" / "results" / "benchmark_latent2.jsonl"
CENTRED_WEIGHTS = ROOT / "toyworld" / "weights" / "toyworld_centred.safetensors"
CENTRED_GPU_LINES = ROOT / "toyworld" / "results" / "centred" / "benchmark_latent2.jsonl"
CATEGORY = next(iter(world.BENCHMARK_PROMPTS))
PROMPT = world.BENCHMARK_PROMPTS[CATEGORY][0]
SEEDS = (0, 1)
VERDICTS = ("judge_present_1", "judge_present_2", "judge_both", "judge_count")


def gpu_lines(path=GPU_LINES):
    lines = [json.loads(t) for t in path.read_text().splitlines()]
    return {(l["seed"], l["method"]): l for l in lines if l["prompt"] == PROMPT}


def sample(weights, methods):
    """{method: (judge results, A&E record)}: the runner's sampling path; "standard" is the patch with
    attend_and_excite off, which samples as the plain model does (test_model_patch) and records the maps."""
    model, clip, vae = toy_model.load(weights, torch.device("cpu"))
    prompt = Prompt(PROMPT, CATEGORY, world.parse_prompt(PROMPT).subject_words)
    out = {}
    for method in methods:
        sampler = Sampler(model, clip, vae, SamplingSettings(size=256),
                          AESettings(attention_res="latent/2", attend_and_excite=method == "ae"))
        images, record = sampler(make_batches([prompt], list(SEEDS), ["ae"], len(SEEDS))[0])
        out[method] = (judge.Judge().measure(images, PROMPT), record)
    return out


@pytest.fixture(scope="module")
def runs():
    return sample(WEIGHTS, ("standard", "ae"))


def test_the_fixed_prompt_is_a_held_out_composition():
    assert PROMPT == "a circle and a square" and world.is_held_out(world.parse_prompt(PROMPT).subjects)


@pytest.mark.parametrize("method", ["standard", "ae"])
def test_the_cpu_run_gives_the_gpu_benchmarks_verdicts(runs, method):
    gpu = gpu_lines()
    found, _ = runs[method]
    for seed, verdict in zip(SEEDS, found):
        expected = gpu[seed, method]["metrics"]
        assert {k: verdict[k] for k in VERDICTS} == {k: expected[k] for k in VERDICTS}, (seed, verdict)
    counts = [sum(bool(v[k]) for v in found) for k in ("judge_present_1", "judge_present_2", "judge_both")]
    gpu_counts = [sum(bool(gpu[s, method]["metrics"][k]) for s in SEEDS)
                  for k in ("judge_present_1", "judge_present_2", "judge_both")]
    assert counts == gpu_counts


def test_the_ae_loss_falls_as_on_the_gpu(runs):
    gpu = gpu_lines()
    _, record = runs["ae"]
    first, last = record.steps[0].loss, record.steps[-1].loss
    assert (last < first - 0.5).all(), (first, last)  # the objective is met: 0.80 -> 0.13 and 0.81 -> 0.15
    for i, seed in enumerate(SEEDS):
        assert float(first[i]) == pytest.approx(gpu[seed, "ae"]["metrics"]["ae_loss_first"], abs=2e-3)
        assert float(last[i]) == pytest.approx(gpu[seed, "ae"]["metrics"]["ae_loss_last"], abs=2e-3)
    # standard sampling does not raise the subjects' peaks: its loss stays high
    _, standard = runs["standard"]
    assert (standard.steps[-1].loss > 0.7).all()


def test_the_circles_attention_peaks_on_the_circle(runs):
    """In the standard images (where the judge finds the circle), the circle token's 16x16 map, as the loss reads
    it at the last A&E step, peaks inside the circle's box (one map cell of slack)."""
    found, record = runs["standard"]
    maps = record.steps[-1].subject_maps.float()
    cell = world.SIZE / maps.shape[-1]
    for b, verdict in enumerate(found):
        circles = [box for text in verdict["judge_objects"].split("; ") if " circle " in f" {text} "
                   for box in [json.loads(text[text.index("["):])]]
        assert circles, verdict["judge_objects"]
        i, j = divmod(int(maps[b, 0].argmax()), maps.shape[-1])
        x, y = (j + 0.5) * cell, (i + 0.5) * cell
        assert any(x0 - cell <= x <= x1 + 1 + cell and y0 - cell <= y <= y1 + 1 + cell
                   for x0, y0, x1, y1 in circles), (b, (x, y), circles)


def test_the_centred_model_samples_the_worlds_dark_backgrounds_where_the_first_samples_grey(runs):
    """The centred latent's point (docs/efficacy.md, "A centred latent"): ComfyUI's zero starting latent is the
    world's mean background for the centred model and mid-grey for the first one. The world's renders keep their
    border at or below 0.164 (judge.border_brightness); 0.25 is the bound the centred run's protocol set for "the
    world's backgrounds" (the GPU benchmark's standard median came out at 0.176; the first model's about 0.5 in
    the CPU check of docs/efficacy.md)."""
    found, _ = sample(CENTRED_WEIGHTS, ("standard",))["standard"]
    gpu = gpu_lines(CENTRED_GPU_LINES)
    for seed, verdict in zip(SEEDS, found):
        expected = gpu[seed, "standard"]["metrics"]
        assert {k: verdict[k] for k in VERDICTS} == {k: expected[k] for k in VERDICTS}, (seed, verdict)
        assert verdict["judge_background"] == pytest.approx(expected["judge_background"], abs=0.01)
        assert verdict["judge_background"] < 0.2
    first_model, _ = runs["standard"]
    assert all(v["judge_background"] > 0.25 for v in first_model), [v["judge_background"] for v in first_model]

"""The step-size protocol's arithmetic (toyworld/tuning.py) on hand-made runner lines: the choice of scale, the
neglect split, the paired counts and the sign test, against counts worked out by hand here; and the committed
tuning results say what docs/efficacy.md reports."""
import json

import pytest

from aande_pack.toyworld import tuning
from harness.host import ROOT

RESULTS = ROOT / "toyworld" / "results"


def line(prompt, seed, method, both, scale=20.0):
    return {"prompt": prompt, "seed": seed, "method": method, "metrics": {"judge_both": both},
            "settings": {"ae": {"scale_factor": scale} if method == "ae" else None}}


def test_choose_takes_the_highest_rate_and_the_smaller_scale_on_a_tie():
    runs = [[line("p", s, "ae", both, scale) for s, both in enumerate(verdicts)]
            for scale, verdicts in ((2.0, [1, 0, 0, 0]), (5.0, [1, 1, 0, 0]), (10.0, [0, 1, 1, 0]))]
    best, rates = tuning.choose(runs)
    assert best == 5.0  # 5 and 10 both reach 2 of 4
    assert rates == {2.0: (0.25, 4), 5.0: (0.5, 4), 10.0: (0.5, 4)}


def test_choose_refuses_a_run_of_mixed_scales():
    with pytest.raises(ValueError, match="one scale factor"):
        tuning.choose([[line("p", 0, "ae", 1, 2.0), line("p", 1, "ae", 1, 5.0)]])


def test_neglect_split_reads_the_standard_lines_only():
    split = [line("a", s, "standard", s < 1) for s in range(4)] + \
        [line("b", s, "standard", s < 2) for s in range(4)] + [line("a", s, "ae", 1) for s in range(4)]
    assert tuning.neglected_prompts(split) == {"a"}  # a: 1/4 < 0.5; b: 2/4 is not below


def test_paired_counts_and_sign_test():
    # 7 pairs A&E fixed, 1 it broke, 2 right with both: sign test p = 2 * P(X <= 1 | n=8, 1/2) = 18 / 256
    lines = []
    verdicts = [(0, 1)] * 7 + [(1, 0)] + [(1, 1)] * 2
    for seed, (std, ae) in enumerate(verdicts):
        lines += [line("p", seed, "standard", std), line("p", seed, "ae", ae)]
    lines.append(line("q", 0, "standard", 1))  # no A&E partner: not a pair
    r = tuning.paired(lines)
    assert (r["pairs"], r["fixed"], r["broken"]) == (10, 7, 1)
    assert r["standard"] == pytest.approx(0.3) and r["ae"] == pytest.approx(0.9)
    assert r["sign_test_p"] == pytest.approx(18 / 256)
    assert tuning.paired(lines, {"q"})["pairs"] == 0


def test_committed_fresh_seed_test_matches_the_efficacy_report():
    lines = tuning.read_lines(RESULTS / "tuning" / "test.jsonl")
    assert sorted({x["seed"] for x in lines}) == list(range(8, 16))
    neglected = tuning.neglected_prompts(tuning.read_lines(RESULTS / "benchmark_latent2.jsonl"))
    every = tuning.paired(lines)
    assert (every["prompts"], every["pairs"], every["fixed"], every["broken"]) == (54, 432, 37, 56)
    assert len(neglected) == 36
    assert (tuning.paired(lines, neglected)["fixed"], tuning.paired(lines, neglected)["broken"]) == (18, 23)
    assert {json.dumps(x["settings"]["ae"]["scale_factor"]) for x in lines if x["method"] == "ae"} == {"20.0"}


def test_committed_centred_model_results_match_the_efficacy_report():
    """docs/efficacy.md, "A centred latent": the GPU benchmark at the paper's step, and the CPU test at scale 5 on
    fresh seeds, as the committed lines count them."""
    centred = RESULTS / "centred"
    neglected = tuning.neglected_prompts(tuning.read_lines(RESULTS / "benchmark_latent2.jsonl"))
    paper = tuning.read_lines(centred / "benchmark_latent2.jsonl")
    every = tuning.paired(paper)
    assert (every["prompts"], every["pairs"], every["fixed"], every["broken"]) == (54, 432, 64, 102)
    assert every["sign_test_p"] == pytest.approx(0.004, abs=5e-4)
    fresh = tuning.read_lines(centred / "cpu_fresh_seeds_scale5.jsonl")
    assert sorted({x["seed"] for x in fresh}) == [8, 9, 10, 11]
    assert {x["settings"]["ae"]["scale_factor"] for x in fresh if x["method"] == "ae"} == {5.0}
    every = tuning.paired(fresh)
    assert (every["prompts"], every["pairs"], every["fixed"], every["broken"]) == (54, 216, 25, 12)
    assert every["sign_test_p"] < 0.05
    assert (tuning.paired(fresh, neglected)["fixed"], tuning.paired(fresh, neglected)["broken"]) == (23, 10)
    replication = tuning.read_lines(centred / "cpu_replication_seeds12_15_scale5.jsonl")  # cut short: 32 prompts
    again = tuning.paired(replication)
    assert (again["prompts"], again["pairs"], again["fixed"], again["broken"]) == (32, 124, 12, 20)
    together = tuning.paired(fresh + replication)
    assert (together["fixed"], together["broken"]) == (37, 32) and together["sign_test_p"] > 0.5

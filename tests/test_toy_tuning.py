"""The step-size protocol's arithmetic (toyworld/tuning.py) on hand-made runner lines: the choice of scale, the
neglect split, the paired counts and the sign test, against counts worked out by hand here; and the committed
tuning results say what docs/efficacy.md reports."""
import json

import pytest

from aande_pack.toyworld import tuning
from harness.host import ROOT

RESULTS = ROOT / "toyworld" / "results"


def line(prompt, seed, method, both, scale=20.0, count=2, loss=None):
    return {"prompt": prompt, "seed": seed, "method": method,
            "metrics": {"judge_both": both, "judge_count": count, "ae_loss_last": loss},
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


def test_failure_kinds_sort_by_verdict_then_object_count():
    assert [tuning.failure_kind(line("p", 0, "standard", both, count=c)["metrics"])
            for both, c in ((True, 3), (False, 1), (False, 0), (False, 2), (False, 4))] == [
        "both present", "fewer than two objects", "fewer than two objects", "two objects, a subject wrong",
        "more than two objects"]


def test_kinds_count_repairs_and_breakages_per_kind():
    lines = [line("p", 0, "standard", False, count=1), line("p", 0, "ae", True, loss=0.4),  # a missing one repaired
             line("p", 1, "standard", True), line("p", 1, "ae", False, count=1, loss=0.2),  # one made to vanish
             line("p", 2, "standard", False, count=2), line("p", 2, "ae", False, count=3, loss=0.1),
             line("p", 4, "standard", False, count=0), line("p", 4, "ae", False, count=1, loss=0.3),
             line("p", 3, "standard", True)]                                               # no A&E line: no pair
    counts = {k: tuple(c.values()) for k, c in tuning.kinds(lines).items()}  # standard, ae, repaired, broken_into
    assert counts == {"both present": (1, 1, 0, 0), "fewer than two objects": (2, 2, 1, 1),
                      "two objects, a subject wrong": (1, 0, 0, 0), "more than two objects": (0, 1, 0, 0)}


def test_loss_gap_compares_images_within_a_prompt():
    lines = [line("p", 0, "ae", True, loss=0.5), line("p", 1, "ae", False, loss=0.2), line("p", 2, "ae", False, loss=0.4),
             line("q", 0, "ae", True, loss=0.1), line("q", 1, "ae", False, loss=0.3),
             line("r", 0, "ae", True, loss=0.9),                       # no image without both: not compared
             line("q", 0, "standard", False, loss=None)]
    gap = tuning.loss_gap(lines)
    assert gap["prompts"] == 2 and gap["positive"] == 1
    assert gap["mean_gap"] == pytest.approx(((0.5 - 0.3) + (0.1 - 0.3)) / 2)


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


def kinds(lines):
    return {k: list(c.values()) for k, c in tuning.kinds(lines).items()}


def test_committed_gpu_repeat_and_absent_model_results_match_the_efficacy_report():
    """docs/efficacy.md, "The GPU repeat" and "A model that neglects": paired counts per scale on fresh seeds
    16-39 (centred model) and seeds 0-15 (the model trained with absent objects), and the failure kinds."""
    neglected = tuning.neglected_prompts(tuning.read_lines(RESULTS / "benchmark_latent2.jsonl"))
    repeat = RESULTS / "centred" / "gpu_repeat_seeds16_39"
    standard = tuning.read_lines(repeat / "arm_standard.jsonl")
    assert sorted({x["seed"] for x in standard}) == list(range(16, 40))
    expected = {2: (78, 107), 5: (114, 159), 10: (124, 217), 20: (133, 315)}
    for scale, counts in expected.items():
        ae = tuning.read_lines(repeat / f"arm_scale{scale}.jsonl")
        assert {x["settings"]["ae"]["scale_factor"] for x in ae} == {float(scale)}
        r = tuning.paired(standard + ae)
        assert (r["prompts"], r["pairs"], (r["fixed"], r["broken"])) == (54, 1296, counts), scale
        assert r["sign_test_p"] < 0.05  # every scale hurts (broken > fixed)
    five = standard + tuning.read_lines(repeat / "arm_scale5.jsonl")
    assert tuning.paired(five)["sign_test_p"] == pytest.approx(0.0076, abs=5e-4)
    assert kinds(five)["fewer than two objects"][:1] == [76]
    assert kinds(five)["two objects, a subject wrong"][:1] == [394]
    absent = RESULTS / "absent"
    standard = tuning.read_lines(absent / "arm_standard.jsonl")
    assert sorted({x["seed"] for x in standard}) == list(range(16))
    for scale, counts in {20: (106, 196), 5: (111, 95)}.items():
        lines = standard + tuning.read_lines(absent / f"arm_scale{scale}.jsonl")
        r = tuning.paired(lines)
        assert (r["prompts"], r["pairs"], (r["fixed"], r["broken"])) == (54, 864, counts), scale
        fewer = kinds(lines)["fewer than two objects"]
        assert fewer == {20: [183, 189, 37, 50], 5: [183, 174, 32, 24]}[scale]
        gap = tuning.loss_gap(lines)  # within a prompt the final loss does not tell success from failure
        assert gap["prompts"] >= 53 and abs(gap["mean_gap"]) < 0.03
    on_neglected = tuning.paired(lines, neglected)
    assert (on_neglected["fixed"], on_neglected["broken"]) == (92, 76)

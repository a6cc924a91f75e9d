"""A&E's step size re-derived for the toy model on a tuning split of seeds, then judged on fresh seeds.

The benchmark (docs/efficacy.md) ran the paper's settings, made for SD's latents; on the toy model they push the
latent off its distribution. The protocol, fixed before any of its runs:
- tuning: every benchmark prompt x seeds 100-102, A&E only, at each scale factor of SCALES; the chosen scale is
  the one with the highest both-present rate (ties: the smaller scale);
- test: every benchmark prompt x seeds 8-15 (seeds no run had used), standard and A&E at the chosen scale, same
  per-seed noise; both-present per method, the pairs A&E fixed and broke, and an exact two-sided sign test on
  those discordant pairs, for all prompts and split by whether the standard model neglects the prompt (its
  both-present rate on the first benchmark's seeds 0-7, toyworld/results/benchmark_latent2.jsonl, below 0.5).

    python -m toyworld.tuning choose TUNE_DIR...            prints the chosen scale factor
    python -m toyworld.tuning compare TEST.jsonl --split toyworld/results/benchmark_latent2.jsonl

compare also sorts the failures by kind (failure_kind): A&E's loss asks for a missing subject's presence, so it
can only be expected to repair images that lack an object, not images that show two objects with one of them
mis-drawn.

No ComfyUI needed.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

SCALES = (2.0, 5.0, 10.0, 20.0)
NEGLECTED_BELOW = 0.5


def read_lines(path: Path) -> list[dict]:
    """The runner's per-image lines from a results file, or from every results*.jsonl of an output folder."""
    files = sorted(path.glob("results*.jsonl")) if path.is_dir() else [path]
    return [json.loads(t) for f in files for t in f.read_text().splitlines() if t.strip()]


def both_rate(lines: list[dict]) -> float:
    return sum(bool(line["metrics"]["judge_both"]) for line in lines) / len(lines)


def choose(runs: list[list[dict]]) -> tuple[float, dict[float, tuple[float, int]]]:
    """(chosen scale factor, (both-present rate, images) per scale) from A&E runs that differ in scale factor
    only."""
    rates = {}
    for lines in runs:
        scales = {line["settings"]["ae"]["scale_factor"] for line in lines}
        if len(scales) != 1:
            raise ValueError(f"a tuning run must hold one scale factor, found {sorted(scales)}")
        rates[scales.pop()] = (both_rate(lines), len(lines))
    best = max(rate for rate, _ in rates.values())
    return min(s for s, (rate, _) in rates.items() if rate == best), rates


def neglected_prompts(split_lines: list[dict]) -> set[str]:
    """Prompts whose standard both-present rate in `split_lines` is below NEGLECTED_BELOW."""
    by_prompt = defaultdict(list)
    for line in split_lines:
        if line["method"] == "standard":
            by_prompt[line["prompt"]].append(bool(line["metrics"]["judge_both"]))
    return {p for p, verdicts in by_prompt.items() if sum(verdicts) / len(verdicts) < NEGLECTED_BELOW}


def _pairs(lines: list[dict], value, prompts: set[str] | None = None) -> tuple[list[tuple], set[str]]:
    """(standard's value, A&E's value) of each (prompt, seed) that has both methods, value(metrics) per image, and
    the prompts the lines hold (those in `prompts` if given)."""
    by_key = {(line["prompt"], line["seed"], line["method"]): value(line["metrics"])
              for line in lines if prompts is None or line["prompt"] in prompts}
    pairs = [(by_key[(p, s, "standard")], by_key[(p, s, "ae")]) for (p, s, m) in by_key
             if m == "standard" and (p, s, "ae") in by_key]
    return pairs, {p for (p, _, _) in by_key}


def paired(lines: list[dict], prompts: set[str] | None = None) -> dict:
    """Both-present per method over the (prompt, seed) pairs that have both methods, the discordant pairs and
    the sign test's p-value."""
    pairs, seen = _pairs(lines, lambda m: bool(m["judge_both"]), prompts)
    fixed = sum(1 for std, ae in pairs if ae and not std)
    broken = sum(1 for std, ae in pairs if std and not ae)
    n = len(pairs)
    return {"prompts": len(seen), "pairs": n,
            "standard": sum(std for std, _ in pairs) / n if n else float("nan"),
            "ae": sum(ae for _, ae in pairs) / n if n else float("nan"), "fixed": fixed, "broken": broken,
            "sign_test_p": binomtest(fixed, fixed + broken).pvalue if fixed + broken else 1.0}


KINDS = ("both present", "fewer than two objects", "two objects, a subject wrong", "more than two objects")


def failure_kind(metrics: dict) -> str:
    """Which of KINDS a judged image is: the judge's verdict and its object count (blobs included)."""
    if metrics["judge_both"]:
        return KINDS[0]
    count = metrics["judge_count"]
    return KINDS[1] if count < 2 else KINDS[2] if count == 2 else KINDS[3]


def kinds(lines: list[dict]) -> dict[str, dict[str, int]]:
    """Per kind, over the (prompt, seed) pairs with both methods: images of that kind with each method, the
    standard images of that kind that A&E turned into both present (repaired), and the standard images with both
    present that A&E turned into that kind (broken_into)."""
    pairs, _ = _pairs(lines, failure_kind)
    return {k: {"standard": sum(std == k for std, _ in pairs), "ae": sum(ae == k for _, ae in pairs),
                "repaired": sum(std == k and ae == KINDS[0] for std, ae in pairs),
                "broken_into": sum(std == KINDS[0] and ae == k for std, ae in pairs)} for k in KINDS}


def kinds_table(lines: list[dict]) -> str:
    out = ["| kind | standard | A&E | repaired by A&E | broken into |", "| --- | --- | --- | --- | --- |"]
    for k, c in kinds(lines).items():
        moved = ("", "") if k == KINDS[0] else (c["repaired"], c["broken_into"])
        out.append(f"| {k} | {c['standard']} | {c['ae']} | {moved[0]} | {moved[1]} |")
    return "\n".join(out)


def loss_gap(lines: list[dict]) -> dict:
    """Does a low A&E loss (every subject's attention peak high at the last altered step) mean both objects are
    there? Within each prompt (categories differ in both their loss and their success, which pooling would mix):
    the mean loss of its A&E images with both subjects present minus that of its A&E images without; averaged over
    the prompts that have both, with how many of them have a positive gap (a loss higher where both are drawn)."""
    by_prompt = defaultdict(lambda: ([], []))
    for line in lines:
        m = line["metrics"]
        if line["method"] == "ae" and m.get("ae_loss_last") is not None:
            by_prompt[line["prompt"]][0 if m["judge_both"] else 1].append(m["ae_loss_last"])
    gaps = [float(np.mean(both) - np.mean(other)) for both, other in by_prompt.values() if both and other]
    return {"prompts": len(gaps), "mean_gap": float(np.mean(gaps)) if gaps else float("nan"),
            "positive": sum(g > 0 for g in gaps)}


def compare_table(lines: list[dict], neglected: set[str]) -> str:
    every = {line["prompt"] for line in lines}
    rows = [("all", None), (f"neglected (standard < {NEGLECTED_BELOW} on seeds 0-7)", neglected & every),
            ("the rest", every - neglected)]
    out = ["| prompts | n prompts | pairs | both present, standard | both present, A&E | fixed | broken | "
           "sign test p |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, subset in rows:
        r = paired(lines, subset)
        out.append(f"| {name} | {r['prompts']} | {r['pairs']} | {r['standard']:.3f} | {r['ae']:.3f} | "
                   f"{r['fixed']} | {r['broken']} | {r['sign_test_p']:.3g} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m toyworld.tuning", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("choose", help="the scale factor with the highest both-present rate")
    c.add_argument("runs", type=Path, nargs="+", help="runner output folders (or results files), one per scale")
    m = sub.add_parser("compare", help="standard vs A&E on the test seeds, all and split by neglect")
    m.add_argument("results", type=Path)
    m.add_argument("--split", type=Path, required=True, help="results whose standard lines define the neglect split")
    args = p.parse_args(argv)
    if args.command == "choose":
        best, rates = choose([read_lines(r) for r in args.runs])
        for scale, (rate, images) in sorted(rates.items()):
            print(f"# scale_factor {scale:g}: both present {rate:.3f} over {images} images")
        print(f"{best:g}")
    else:
        lines = read_lines(args.results)
        print(compare_table(lines, neglected_prompts(read_lines(args.split))))
        print()
        print(kinds_table(lines))
        gap = loss_gap(lines)
        print(f"\nA&E loss at the last altered step, within a prompt, images with both present minus the rest: "
              f"{gap['mean_gap']:+.3f} on average over {gap['prompts']} prompts, positive in {gap['positive']}")


if __name__ == "__main__":
    main()

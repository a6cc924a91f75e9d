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

No ComfyUI needed.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

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


def paired(lines: list[dict], prompts: set[str] | None = None) -> dict:
    """Both-present per method over the (prompt, seed) pairs that have both methods, the discordant pairs and
    the sign test's p-value."""
    verdict = {(line["prompt"], line["seed"], line["method"]): bool(line["metrics"]["judge_both"])
               for line in lines if prompts is None or line["prompt"] in prompts}
    pairs = [(verdict[(p, s, "standard")], verdict[(p, s, "ae")]) for (p, s, m) in verdict
             if m == "standard" and (p, s, "ae") in verdict]
    fixed = sum(1 for std, ae in pairs if ae and not std)
    broken = sum(1 for std, ae in pairs if std and not ae)
    n = len(pairs)
    return {"prompts": len({p for (p, _, _) in verdict}), "pairs": n,
            "standard": sum(std for std, _ in pairs) / n if n else float("nan"),
            "ae": sum(ae for _, ae in pairs) / n if n else float("nan"), "fixed": fixed, "broken": broken,
            "sign_test_p": binomtest(fixed, fixed + broken).pvalue if fixed + broken else 1.0}


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
        print(compare_table(read_lines(args.results), neglected_prompts(read_lines(args.split))))


if __name__ == "__main__":
    main()

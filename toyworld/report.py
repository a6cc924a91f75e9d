"""The efficacy benchmark's table and bar chart from the evaluation runner's per-image lines (toyworld/results/):
`python -m toyworld.report RESULTS.jsonl --chart OUT.png` prints Table 1's layout for the judge's metrics and
draws both-present, binding and per-subject presence per category with their 95% intervals, as in
docs/efficacy.md. No ComfyUI needed."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .comfy_host import import_pack

METRICS = (("judge_both", "both present"), ("judge_binding", "binding"), ("judge_present_1", "subject 1"),
           ("judge_present_2", "subject 2"))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m toyworld.report", description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="a results.jsonl or results-rank0.jsonl of the runner")
    p.add_argument("--chart", type=Path, help="write the bar chart here (PNG)")
    args = p.parse_args(argv)
    import_pack()
    from aande_pack.aande_eval import chart, table
    lines = [json.loads(t) for t in args.results.read_text().splitlines() if t.strip()]
    summary = table.summarise(lines)
    print(table.markdown(summary, lines))
    if args.chart:
        chart.draw(summary, args.chart, width=1500, metrics=METRICS,
                   title="Toy world, held-out prompts: judged rates (mean, 95% CI over prompts)")
        print(args.chart)


if __name__ == "__main__":
    main()

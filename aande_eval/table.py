"""Table 1 of the paper from a run's per-image results: per category and method, the mean of every metric with a
95% confidence interval. Images of one prompt share the prompt, so the interval is taken over prompts: the
per-prompt means' mean +- 1.96 standard errors (n = prompts in the category). Booleans count as 0/1 (rates)."""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict

# the paper's own columns first, with the names its Table 1 and CLIP figure use
PAPER_COLUMNS = {"clip_full": "CLIP full prompt", "clip_min_half": "CLIP min. object",
                 "blip_similarity": "BLIP text-text"}
# the paper's Table 1 (text-text similarity, 276 prompts x 64 seeds, SD1.4) for comparison
PAPER_TABLE1 = {"standard": {"animals": 0.76, "animals_objects": 0.78, "objects": 0.77},
                "ae": {"animals": 0.80, "animals_objects": 0.82, "objects": 0.81}}


def numeric(value):
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def counts(lines: list[dict]) -> dict:
    """{(category or "all", method): (prompts, images)}."""
    prompts, images = defaultdict(set), defaultdict(int)
    for line in lines:
        for category in (line["category"], "all"):
            prompts[(category, line["method"])].add(line["prompt"])
            images[(category, line["method"])] += 1
    return {k: (len(prompts[k]), images[k]) for k in images}


def summarise(lines: list[dict]) -> dict:
    """{category or "all": {method: {metric: {"mean", "ci95", "prompts", "images"}}}}: per metric, the prompts
    and images that have a value for it (a colour-binding rate only exists for prompts that name colours)."""
    per_prompt = defaultdict(list)  # (category, method, metric, prompt) -> values
    for line in lines:
        for metric, value in line["metrics"].items():
            v = numeric(value)
            if v is not None:
                for category in (line["category"], "all"):
                    per_prompt[(category, line["method"], metric, line["prompt"])].append(v)
    grouped = defaultdict(list)
    for (category, method, metric, _), values in per_prompt.items():
        grouped[(category, method, metric)].append((sum(values) / len(values), len(values)))
    out: dict = {}
    for (category, method, metric), means in grouped.items():
        values = [m for m, _ in means]
        n = len(values)
        mean = sum(values) / n
        ci = 1.96 * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
        out.setdefault(category, {}).setdefault(method, {})[metric] = {
            "mean": mean, "ci95": ci, "prompts": n, "images": sum(k for _, k in means)}
    return out


PAPER_CATEGORIES = ("animals", "animals_objects", "objects")


def categories_of(summary: dict) -> list[str]:
    """The summary's categories, the paper's first and in its order, without "all"."""
    return [c for c in PAPER_CATEGORIES if c in summary] + sorted(set(summary) - set(PAPER_CATEGORIES) - {"all"})


def method_order(methods) -> list[str]:
    """Standard sampling first, then the others by name."""
    return sorted(methods, key=lambda m: (m != "standard", m))


def metric_order(summary: dict) -> list[str]:
    seen = {m for methods in summary.values() for metrics in methods.values() for m in metrics}
    return [m for m in PAPER_COLUMNS if m in seen] + sorted(seen - set(PAPER_COLUMNS))


def rows(summary: dict, lines: list[dict]) -> list[dict]:
    sizes, out = counts(lines), []
    for category in categories_of(summary) + ["all"]:
        for method in method_order(summary.get(category, {})):
            prompts, images = sizes[(category, method)]
            row = {"category": category, "method": method, "prompts": prompts, "images": images}
            for metric, value in summary[category][method].items():
                row[metric], row[f"{metric}_ci95"] = value["mean"], value["ci95"]
            out.append(row)
    return out


def markdown(summary: dict, lines: list[dict]) -> str:
    metrics = metric_order(summary)
    head = ["category", "method", "prompts", "images"] + [PAPER_COLUMNS.get(m, m) for m in metrics]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows(summary, lines):
        cells = [row["category"], row["method"], str(row["prompts"]), str(row["images"])]
        for m in metrics:
            v, ci = row.get(m), row.get(f"{m}_ci95")
            cells.append("-" if v is None else f"{v:.4f}" + (f" ± {ci:.4f}" if ci is not None else ""))
        out.append("| " + " | ".join(cells) + " |")
    note = "\n\n± is a 95% confidence interval over the prompts of a category."
    if "blip_similarity" in metrics:
        paper = "; ".join(f"{method}: " + ", ".join(f"{c} {v:.2f}" for c, v in by.items())
                          for method, by in PAPER_TABLE1.items())
        note += f" The paper's Table 1 (BLIP text-text, SD1.4, 276 prompts x 64 seeds): {paper}."
    return "\n".join(out) + note + "\n"


def csv_text(summary: dict, lines: list[dict]) -> str:
    table = rows(summary, lines)
    fields = list(dict.fromkeys(k for row in table for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def write_tables(out, summary: dict, lines: list[dict]) -> list:
    paths = [out / "table1.md", out / "table1.csv", out / "table1.json"]
    for path, text in zip(paths, (markdown(summary, lines), csv_text(summary, lines), json.dumps(summary, indent=1))):
        path.write_text(text)
    return paths

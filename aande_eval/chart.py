"""The paper's CLIP figure as a PNG: per category, the mean full-prompt and min-object CLIP similarity of each
method, with its 95% confidence interval as an error bar (Pillow only: no plotting library is required). Other
metrics of a summary draw the same way (the toy world's presence rates, toyworld/report.py)."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .table import categories_of, method_order

COLOURS = {"standard": (120, 160, 220), "ae": (240, 150, 60)}
OTHER = (150, 200, 120)
METRICS = (("clip_full", "full prompt"), ("clip_min_half", "min. object"))


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def draw(summary: dict, path, width=1100, height=520, metrics=METRICS,
         title="CLIP image-text similarity (mean, 95% CI over prompts)") -> None:
    """metrics: (key, label) pairs of summary's metrics, one group of bars per category and metric."""
    categories = categories_of(summary)
    methods = method_order({m for c in categories for m in summary[c]})
    values = [summary[c][m][k] for c in categories for m in methods for k, _ in metrics if k in summary[c].get(m, {})]
    if not values:
        raise ValueError(f"the results hold none of {', '.join(k for k, _ in metrics)} to draw")
    top = max(v["mean"] + (v["ci95"] or 0) for v in values) * 1.1 or 1.0
    low = min(0.0, min(v["mean"] - (v["ci95"] or 0) for v in values))
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font, small = _font(18), _font(14)
    left, right, top_px, bottom = 70, width - 20, 50, height - 80

    def y_of(v):
        return bottom - (bottom - top_px) * (v - low) / (top - low)

    d.text((left, 12), title, fill=(0, 0, 0), font=font)
    d.line([(left, top_px), (left, bottom), (right, bottom)], fill=(0, 0, 0))
    for i in range(6):
        v = low + (top - low) * i / 5
        y = y_of(v)
        d.line([(left - 5, y), (left, y)], fill=(0, 0, 0))
        d.text((8, y - 8), f"{v:.3f}", fill=(0, 0, 0), font=small)
    slots = len(categories) * len(metrics)
    slot_w = (right - left) / slots
    bar_w = slot_w * 0.8 / max(1, len(methods))
    for ci, category in enumerate(categories):
        for mi, (key, label) in enumerate(metrics):
            x0 = left + (ci * len(metrics) + mi) * slot_w + slot_w * 0.1
            for k, method in enumerate(methods):
                value = summary[category].get(method, {}).get(key)
                if value is None:
                    continue
                x = x0 + k * bar_w
                d.rectangle([x, y_of(value["mean"]), x + bar_w - 2, bottom], fill=COLOURS.get(method, OTHER),
                            outline=(60, 60, 60))
                if value["ci95"]:
                    y_lo, y_hi = y_of(value["mean"] - value["ci95"]), y_of(value["mean"] + value["ci95"])
                    for ye in (y_lo, y_hi):
                        d.line([(x + bar_w / 2 - 6, ye), (x + bar_w / 2 + 4, ye)], fill=(0, 0, 0), width=2)
                    d.line([(x + bar_w / 2 - 1, y_lo), (x + bar_w / 2 - 1, y_hi)], fill=(0, 0, 0), width=2)
            d.text((x0, bottom + 8), label, fill=(0, 0, 0), font=small)
        d.text((left + ci * len(metrics) * slot_w + slot_w * 0.1, bottom + 30), category, fill=(0, 0, 0), font=font)
    for k, method in enumerate(methods):
        x = right - 200 + k * 100
        d.rectangle([x, 14, x + 18, 30], fill=COLOURS.get(method, OTHER))
        d.text((x + 24, 12), "A&E" if method == "ae" else method, fill=(0, 0, 0), font=small)
    img.save(path)

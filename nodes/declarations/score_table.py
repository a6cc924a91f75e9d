"""What the score nodes (clip_score.py, blip_caption.py) share in the graph: their menu category and the per-image
table they show in the node and return."""
from __future__ import annotations

CATEGORY = "sampling/attend_and_excite/evaluation"

def value_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> str:
    """A plain-text table under `title`: one row per image ("#0", "#1", ... as batch indices count), then the mean
    of each number column; numbers with 4 decimals."""
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [header] + [(f"#{i}", *map(cell, row)) for i, row in enumerate(rows)]
    cells.append(("mean", *(cell(sum(col) / len(col)) if all(isinstance(v, float) for v in col) else ""
                            for col in zip(*rows))))
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    return "\n".join([title] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells])

"""The paper's prompts (Chefer et al. 2023: 276 prompts in three categories, shipped as data/ae_prompts.json) and
their subjects: the noun closing each half of the prompt, the halves split as the CLIP metric splits them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..aande_metrics.halves import split_halves

PAPER_PROMPTS = Path(__file__).resolve().parent / "data" / "ae_prompts.json"


@dataclass(frozen=True)
class Prompt:
    text: str
    category: str
    subjects: str  # the subjects as "Select Subject Tokens" takes them: "cat, frog"


def subjects_of(text: str) -> str:
    """'a pink crown and a purple bow' -> 'crown, bow': the last word of each half."""
    return ", ".join(half.split()[-1] for half in split_halves(text))


def load_prompts(path: Path = PAPER_PROMPTS, categories: list[str] | None = None,
                 per_category: int | None = None) -> list[Prompt]:
    """The prompts of `path` ({category: [prompt, ...]}) in file order, optionally only some categories and the
    first `per_category` of each."""
    data = json.loads(Path(path).read_text())
    unknown = sorted(set(categories or ()) - set(data))
    if unknown:
        raise ValueError(f"unknown prompt categories {unknown}; {path} has {sorted(data)}")
    out = []
    for category, texts in data.items():
        if categories and category not in categories:
            continue
        out += [Prompt(t, category, subjects_of(t)) for t in texts[:per_category]]
    if not out:
        raise ValueError(f"no prompts selected from {path}")
    return out

"""The evaluation grid: (prompt, seed, method) items, in batches of one prompt and method, and the share of each
process.

A batch holds consecutive seeds of one prompt and method, so its composition depends only on the batch size, never
on how many processes run: any process that runs a batch computes it exactly as any other would. A unit is one
prompt's seed chunk with every method; units are dealt round-robin to the processes, so each process gets as
many A&E batches (the slow ones) as standard ones.
"""
from __future__ import annotations

from dataclasses import dataclass

from .prompts import Prompt

METHODS = ("standard", "ae")


@dataclass(frozen=True)
class Batch:
    index: int                 # position in the grid
    unit: int                  # the (prompt, seed chunk) it belongs to
    prompt: Prompt
    method: str
    seeds: tuple[int, ...]

    def keys(self) -> list[tuple[str, int, str]]:
        return [(self.prompt.text, seed, self.method) for seed in self.seeds]


def make_batches(prompts: list[Prompt], seeds: list[int], methods=METHODS, batch_size: int = 4) -> list[Batch]:
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; use {', '.join(METHODS)}")
    out, unit = [], 0
    for prompt in prompts:
        for k in range(0, len(seeds), batch_size):
            for method in methods:
                out.append(Batch(len(out), unit, prompt, method, tuple(seeds[k:k + batch_size])))
            unit += 1
    return out


def share(batches: list[Batch], rank: int, world_size: int) -> list[Batch]:
    """The batches process `rank` of `world_size` runs: every world_size-th unit."""
    return [b for b in batches if b.unit % world_size == rank]

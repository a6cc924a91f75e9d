"""A&E settings with the paper's defaults, and how its 50-step numbers map to other step counts."""
from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_THRESHOLDS = ((0, 0.05), (10, 0.5), (20, 0.8))


@dataclass(frozen=True)
class AEConfig:
    """Defaults are those of the paper and the official code (Stable Diffusion 1.4, 50 steps)."""
    max_iter_to_alter: int = 25            # A&E runs at steps 0..24 of 50
    scale_factor: float = 20.0             # step size a_i = scale_factor * sqrt(scale_range_i)
    scale_range: tuple[float, float] = (1.0, 0.5)
    thresholds: tuple[tuple[int, float], ...] = PAPER_THRESHOLDS  # (step of 50, threshold) for refinement
    max_refinement_steps: int = 20
    smooth_attentions: bool = True
    sigma: float = 0.5
    kernel_size: int = 3
    normalize_eot: bool = False            # softmax over the prompt's own tokens only (the reference's SD2 mode)
    reference_steps: int = 50              # the step count the step numbers above refer to

    def __post_init__(self):
        if self.max_iter_to_alter < 0 or self.max_refinement_steps < 0:
            raise ValueError("max_iter_to_alter and max_refinement_steps must be >= 0")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        for step, thr in self.thresholds:
            if step < 0 or not 0.0 <= thr <= 1.0:
                raise ValueError(f"refinement threshold {step}:{thr} needs a step >= 0 and a threshold in 0..1")

    def to_run_step(self, paper_step: float, total_steps: int) -> int:
        """Paper step (of `reference_steps`) -> step of a run with `total_steps` steps (floor of the scaled step)."""
        return int(math.floor(paper_step * total_steps / self.reference_steps + 1e-9))

    def alter_steps(self, total_steps: int) -> int:
        """Number of leading steps that A&E alters: max_iter_to_alter scaled to the run, rounded half up."""
        return min(total_steps, int(math.floor(self.max_iter_to_alter * total_steps / self.reference_steps + 0.5)))

    def refinement_thresholds(self, total_steps: int) -> dict[int, float]:
        """Run step -> threshold. When two paper steps land on one run step, the later one wins."""
        out: dict[int, float] = {}
        for step, thr in sorted(self.thresholds):
            out[self.to_run_step(step, total_steps)] = thr
        return out

    def step_size(self, step: int, total_steps: int) -> float:
        """a_i = scale_factor * sqrt(linspace(scale_range[0], scale_range[1], total_steps)[i])."""
        lo, hi = self.scale_range
        frac = step / (total_steps - 1) if total_steps > 1 else 0.0
        return self.scale_factor * math.sqrt(lo + (hi - lo) * frac)


def parse_thresholds(text: str) -> tuple[tuple[int, float], ...]:
    """Parse "0:0.05, 10:0.5, 20:0.8" (paper steps of 50 : threshold); "" means no refinement."""
    out = []
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        step, sep, thr = item.partition(":")
        try:
            if not sep:
                raise ValueError
            out.append((int(step), float(thr)))
        except ValueError:
            raise ValueError(f"refinement thresholds must look like '0:0.05, 10:0.5, 20:0.8', got {item!r}") from None
    if len({s for s, _ in out}) != len(out):
        raise ValueError(f"a refinement step is given twice in {text!r}")
    return tuple(sorted(out))

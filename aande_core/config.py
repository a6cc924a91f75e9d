"""The A&E settings (one object, the paper's defaults) and the plan they make for a run of T steps.

The paper's numbers are for 50 steps. `plan(T)` scales them to T steps, exactly as the reference runs them:
the regular update at the first `max_iter_to_alter` steps, and iterative refinement at every threshold step,
also at one beyond `max_iter_to_alter` (there the refinement's updates are applied and the regular update is
not, as in the official code and diffusers' pipeline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

PAPER_THRESHOLDS = ((0, 0.05), (10, 0.5), (20, 0.8))
ATTENTION_RES = {"auto": 4, "latent/2": 2, "latent/4": 4, "latent/8": 8}  # name -> downsampling of the latent
NORMALIZE_EOT = ("auto", "on", "off")
MEMORY_SAVING = ("auto", "on", "off")
SD2_CONTEXT_WIDTH = 1024  # OpenCLIP-H: the reference normalises over the prompt's own tokens for SD2


@dataclass(frozen=True)
class AESettings:
    """Every A&E input of the nodes. Defaults are those of the paper and the official code (SD1.4, 50 steps).

    "auto" values are resolved by `resolved()`, once per run, when the model's text width is known; memory_saving
    "auto" is decided by the gradient pass from the free VRAM.
    """
    attend_and_excite: bool = True         # False: standard sampling that records attention only
    token_indices: tuple[int, ...] = ()    # typed subject indices; they override the conditioning's selection
    max_iter_to_alter: int = 25            # the regular update runs at steps 0..24 of 50
    scale_factor: float = 20.0             # step size a_i = scale_factor * sqrt(scale_range_i)
    scale_range: tuple[float, float] = (1.0, 0.5)
    thresholds: tuple[tuple[int, float], ...] = PAPER_THRESHOLDS  # (step of 50, threshold) for refinement
    max_refinement_steps: int = 20
    smooth_attentions: bool = True
    sigma: float = 0.5
    kernel_size: int = 3
    attention_res: str = "auto"            # a key of ATTENTION_RES
    normalize_eot: str = "auto"            # "on": softmax over the prompt's own tokens; "auto": on for SD2
    memory_saving: str = "auto"            # the gradient pass recomputes activations; "auto": when VRAM is short
    compile_pass: bool = False             # the CUDA-graph gradient pass is compiled (torch.compile) first
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
        if self.attention_res not in ATTENTION_RES:
            raise ValueError(f"attention_res must be one of {', '.join(ATTENTION_RES)}, got {self.attention_res!r}")
        if self.normalize_eot not in NORMALIZE_EOT:
            raise ValueError(f"normalize_eot must be one of {', '.join(NORMALIZE_EOT)}, got {self.normalize_eot!r}")
        if self.memory_saving not in MEMORY_SAVING:
            raise ValueError(f"memory_saving must be one of {', '.join(MEMORY_SAVING)}, got {self.memory_saving!r}")

    def resolved(self, context_width: int) -> "AESettings":
        """The settings with every "auto" made concrete for a text context `context_width` wide."""
        eot = self.normalize_eot
        if eot == "auto":
            eot = "on" if context_width == SD2_CONTEXT_WIDTH else "off"
        res = "latent/4" if self.attention_res == "auto" else self.attention_res
        return replace(self, normalize_eot=eot, attention_res=res)

    @property
    def attention_factor(self) -> int:
        """Downsampling of the latent at which the loss reads the cross-attention maps."""
        return ATTENTION_RES[self.attention_res]

    def to_run_step(self, paper_step: float, total_steps: int) -> int:
        """Paper step (of `reference_steps`) -> step of a run with `total_steps` steps (floor of the scaled step)."""
        return int(math.floor(paper_step * total_steps / self.reference_steps + 1e-9))

    def alter_steps(self, total_steps: int) -> int:
        """Number of leading steps with the regular update: max_iter_to_alter scaled to the run, rounded half up."""
        return min(total_steps, int(math.floor(self.max_iter_to_alter * total_steps / self.reference_steps + 0.5)))

    def refinement_thresholds(self, total_steps: int) -> dict[int, float]:
        """Run step -> threshold, for steps inside the run. When two paper steps land on one run step, the later
        one wins."""
        out: dict[int, float] = {}
        for step, thr in sorted(self.thresholds):
            run_step = self.to_run_step(step, total_steps)
            if run_step < total_steps:
                out[run_step] = thr
        return out

    def step_size(self, step: int, total_steps: int) -> float:
        """a_i = scale_factor * sqrt(linspace(scale_range[0], scale_range[1], total_steps)[i])."""
        lo, hi = self.scale_range
        frac = step / (total_steps - 1) if total_steps > 1 else 0.0
        return self.scale_factor * math.sqrt(lo + (hi - lo) * frac)

    def plan(self, total_steps: int) -> dict[int, "StepPlan"]:
        """Run step -> what A&E does there, for the steps where it does anything (the A&E steps)."""
        alter, thresholds = self.alter_steps(total_steps), self.refinement_thresholds(total_steps)
        return {i: StepPlan(i, i < alter, thresholds.get(i), self.step_size(i, total_steps))
                for i in sorted(set(range(alter)) | set(thresholds))}


@dataclass(frozen=True)
class StepPlan:
    step: int
    update: bool              # the regular gradient update (the step is below the scaled max_iter_to_alter)
    threshold: float | None   # iterative refinement while the loss is above 1 - threshold; None: none
    step_size: float


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

"""Attend-and-Excite (Chefer et al., SIGGRAPH 2023) as small, pure torch pieces; no ComfyUI import."""
from .attention import AttentionAccumulator, softmax_columns, token_probabilities
from .config import AEConfig, parse_thresholds
from .excite import StepOutcome, excite_step
from .objective import Evaluation, Objective
from .record import AttentionRecord, StepRecord
from .selection import TokenSelection, parse_indices, validate_positions
from .smoothing import gaussian_kernel, smooth

__all__ = [
    "AEConfig", "AttentionAccumulator", "AttentionRecord", "Evaluation", "Objective", "StepOutcome",
    "StepRecord", "TokenSelection", "excite_step", "gaussian_kernel", "parse_indices", "parse_thresholds",
    "smooth", "softmax_columns", "token_probabilities", "validate_positions",
]

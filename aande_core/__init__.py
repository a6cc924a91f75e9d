"""Attend-and-Excite (Chefer et al., SIGGRAPH 2023) as small, pure torch pieces; no ComfyUI import."""
from .attention import AttentionAccumulator, softmax_columns, token_probabilities
from .config import AESettings, StepPlan, parse_thresholds
from .excite import StepOutcome, excite_step
from .objective import Objective, PassResult
from .record import AttentionRecord, RecordBuilder, StepRecord
from .selection import TokenSelection, parse_indices
from .smoothing import gaussian_kernel, smooth

__all__ = [
    "AESettings", "AttentionAccumulator", "AttentionRecord", "Objective", "PassResult", "RecordBuilder",
    "StepOutcome", "StepPlan", "StepRecord", "TokenSelection", "excite_step", "gaussian_kernel", "parse_indices",
    "parse_thresholds", "smooth", "softmax_columns", "token_probabilities",
]

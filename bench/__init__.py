"""The GPU benchmark and checks. They share the test harness (tests/harness: ComfyUI as a library, models with
random weights, the diffusers twin), importable as `harness`."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK_TFLOPS = 790.0  # the dense fp16/bf16 matrix rate MFU figures are taken against (H200: ~790 TFLOP/s measured)
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

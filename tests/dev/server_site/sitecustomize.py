"""Test server only (tests/harness/server.py puts this folder on its PYTHONPATH, before tests/dev/stubs): let
transformers decide whether torchvision exists before the torchvision stand-in of tests/dev/stubs is importable,
as tests/harness/host.py does in the test process. transformers decides once, when transformers.utils.import_utils
is imported; meeting the stand-in, it would import torchvision.transforms and fail on every CLIP or BLIP load."""
import sys

_saved = list(sys.path)
sys.path[:] = [p for p in sys.path if not p.replace("\\", "/").rstrip("/").endswith("tests/dev/stubs")]
try:
    import transformers.utils.import_utils  # noqa: F401
except ImportError:  # no transformers: nothing to decide
    pass
finally:
    sys.path[:] = _saved

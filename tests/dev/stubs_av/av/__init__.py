"""Stand-in for PyAV where it is not installed (the GPU machine): ComfyUI's nodes.py imports comfy_api, whose video
types import av and two of its classes at module level. Every other use raises. Dev/bench harness only."""


def __getattr__(name):
    raise ImportError(f"PyAV is not installed here (av.{name}); this is the harness's stand-in, which only lets "
                      "ComfyUI's modules import")

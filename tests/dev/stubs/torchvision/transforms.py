"""Dev-harness stand-in for torchvision.transforms, which ComfyUI's cosmos model files import at module
level. torchvision/ is a namespace package on purpose: it has no __file__ or version, so transformers and
diffusers treat torchvision as absent. Any use raises."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"torchvision is a dev-harness stand-in: 'torchvision.transforms.{name}' is not available")

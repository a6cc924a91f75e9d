"""Dev-harness stand-in for torchvision.transforms (not installable here); any use raises."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError("torchvision is a dev-harness stand-in: 'torchvision.transforms.%s' is not available in the test host" % name)

"""Dev-harness stand-in for torchaudio (not installable here); any use raises."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError("torchaudio is a dev-harness stand-in: 'torchaudio.%s' is not available in the test host" % name)

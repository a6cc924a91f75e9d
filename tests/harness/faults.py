"""Faults injected into A&E runs: shared by the CPU tests and bench/gpu_checks.py."""
from contextlib import contextmanager

from aande_pack.aande_core import objective


@contextmanager
def nan_in_first_gradient(sample: int = 1):
    """A NaN in `sample`'s gradient at the first gradient pass of the next run (Objective.loss patched)."""
    original, calls = objective.Objective.loss, []

    def poisoned(self, attention, z=None):
        result = original(self, attention, z)
        if z is not None and not calls:
            result.grad[sample] = float("nan")
        calls.append(1)
        return result

    objective.Objective.loss = poisoned
    try:
        yield
    finally:
        objective.Objective.loss = original

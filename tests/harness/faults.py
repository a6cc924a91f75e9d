"""Faults injected into A&E runs: shared by the CPU tests and bench/gpu_checks.py."""
from contextlib import contextmanager

from aande_pack.aande_core import objective


@contextmanager
def nan_in_first_gradient(sample: int = 1):
    """A NaN in `sample`'s gradient at the first gradient evaluation of the next run (Objective.evaluate patched)."""
    original, calls = objective.Objective.evaluate, []

    def poisoned(self, attention, z=None):
        ev = original(self, attention, z)
        if z is not None and not calls:
            ev.grad[sample] = float("nan")
        calls.append(1)
        return ev

    objective.Objective.evaluate = poisoned
    try:
        yield
    finally:
        objective.Objective.evaluate = original

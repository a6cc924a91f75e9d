"""Hooks into a run for benchmarks and profilers, so they time the run's parts through the run's own seams
instead of replacing its methods. The default observer does nothing."""
from __future__ import annotations

from contextlib import nullcontext


class RunObserver:
    """Subclass and override what you need; the run calls these and never depends on what they do."""

    def run_started(self, run) -> None:
        """The run is set up (its gradient pass exists), before the sampler's first step."""

    def step_started(self, run, step: int, z, sigma) -> None:
        """Before the A&E update of `step`, inside run.gradient_pass.active(): z is the variance-preserving
        latent the step starts from. Raising here ends sampling (the run still finishes its record)."""

    def step_finished(self, run, step: int, z, sigma, outcome) -> None:
        """After the A&E update of `step`, still inside run.gradient_pass.active(): outcome.z is the updated
        latent, which the sampler's model call of this step then receives."""

    def phase(self, name: str):
        """A context manager around a part of the run: "start", "excite" (an A&E step's update), "gradient pass",
        "cfg" (the sampler's model call at an A&E step), "cfg plain" (at other steps), "finish"."""
        return nullcontext()


NO_OBSERVER = RunObserver()

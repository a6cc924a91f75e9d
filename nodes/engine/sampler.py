"""The A&E sampler: any KSAMPLER, with Attend-and-Excite applied at the start of its A&E steps.

AESampler wraps the base sampler's function so that the first model call of each A&E step goes through the
run (run.py) before the ordinary CFG prediction. Step boundaries come from the sampler's per-step callback, so
multi-evaluation samplers (heun, dpm_2, ...) get one A&E update per step. Every way into the pack ends here:
"A&E Sampler" returns one, and the model patch (patch.py) puts one around the sampler of any sampler node.
"""
from __future__ import annotations

from typing import Callable

from ...aande_core.config import AESettings
from ...aande_core.record import AttentionRecord
from ...aande_core.selection import TokenSelection
from .. import compat
from .observer import NO_OBSERVER, RunObserver
from .run import Run


class AESampler(compat.sampler_base_class()):
    def __init__(self, base, settings: AESettings, publish: Callable[[AttentionRecord], None],
                 observer: RunObserver = NO_OBSERVER, legacy_selection: TokenSelection | None = None):
        """publish: receives each run's finished record. legacy_selection: the deprecated AE_TOKENS input."""
        if not isinstance(base, compat.ksampler_class()):
            raise ValueError(f"A&E wraps k-diffusion samplers (KSAMPLER); got {type(base).__name__}. "
                             "Use a sampler from KSamplerSelect or the A&E KSampler node")
        self.base, self.settings, self.publish = base, settings, publish
        self.observer, self.legacy_selection = observer, legacy_selection

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        with self.observer.phase("start"):
            run = Run(model_wrap, sigmas, extra_args["model_options"], noise, self.settings, self.observer,
                      self.legacy_selection)
        self.observer.run_started(run)
        extra_args = dict(extra_args, model_options=run.model_options(extra_args["model_options"]))
        base_fn = self.base.sampler_function

        def sampler_function(model_k, x, sigmas, extra_args=None, callback=None, disable=None, **kwargs):
            def step_callback(info):
                run.step_done(info["i"])
                if callback is not None:
                    callback(info)
            return base_fn(_AEDenoiser(model_k, run), x, sigmas, extra_args=extra_args, callback=step_callback,
                           disable=disable, **kwargs)

        inner = compat.ksampler_class()(sampler_function, self.base.extra_options, self.base.inpaint_options)
        try:
            return inner.sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                                disable_pbar)
        finally:
            self.publish(run.finish())


class _AEDenoiser:
    """Stands in for the sampler's model: A&E happens before the first evaluation of each A&E step."""

    def __init__(self, inner, run: Run):
        self.inner, self.run = inner, run

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, sigma, **kwargs):
        if not self.run.pending():
            with self.run.observer.phase("cfg plain"):
                return self.inner(x, sigma, **kwargs)
        return self.run.at_step(x, sigma, lambda: self.inner(x, sigma, **kwargs))

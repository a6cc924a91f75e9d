"""A&E as a MODEL patch: a clone of the model whose sampling runs through AESampler, for any sampler node.

The clone gets a SAMPLER_SAMPLE wrapper (ComfyUI's public extension point around sampler.sample). When any node
samples with the clone (KSampler, KSampler (Advanced), SamplerCustom(Advanced), other packs' samplers), the
wrapper puts an AESampler around the node's sampler and runs the rest of the wrapper chain with it. Nothing is
changed on the input model or in ComfyUI's modules, and the clone's weights are the input model's.

A&E's step numbers count the steps of the run the wrapper sees: for KSampler (Advanced) the steps from
start_at_step to end_at_step, as with denoise < 1 the steps the sampler runs.
"""
from __future__ import annotations

from ...aande_core.config import AESettings
from ...aande_core.record import AttentionRecord
from ...aande_core.selection import TokenSelection
from .. import compat
from .observer import NO_OBSERVER, RunObserver
from .record_slot import RecordSlot
from .sampler import AESampler

WRAPPER_KEY = "attend_and_excite"


def attend_and_excite_model(model, settings: AESettings, slot: RecordSlot, observer: RunObserver = NO_OBSERVER,
                            legacy_selection: TokenSelection | None = None):
    """A clone of the ModelPatcher `model` that samples with A&E; each run publishes its record to `slot`.
    legacy_selection: the deprecated AE_TOKENS input of the A&E KSampler."""
    compat.cross_attention_layers(model.get_model_object("diffusion_model"))  # refuses models without a UNet
    clone = model.clone()

    def sampler_sample(executor, guider, sigmas, extra_args, callback, noise, *rest):
        sampler = AESampler(executor.class_obj, settings, slot.publish, observer, legacy_selection)
        return compat.continue_with_sampler(executor, sampler, guider, sigmas, extra_args, callback, noise, *rest)

    compat.add_sampler_wrapper(clone, WRAPPER_KEY, sampler_sample)
    return clone


def ksample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
            settings: AESettings, observer: RunObserver = NO_OBSERVER,
            legacy_selection: TokenSelection | None = None) -> tuple[dict, AttentionRecord]:
    """What the A&E KSampler node does: the stock KSampler's sampling (nodes.common_ksampler) on the A&E clone.
    Returns the LATENT and the run's record."""
    slot = RecordSlot()
    patched = attend_and_excite_model(model, settings, slot, observer, legacy_selection)
    (latent,) = compat.common_ksampler(patched, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                       latent_image, denoise=denoise)
    return latent, slot.record()

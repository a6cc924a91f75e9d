"""Run the A&E KSampler node on test models with the paper's defaults, overridable per test."""
import torch

from harness.host import import_comfy

import_comfy()
from aande_pack.nodes.declarations.ae_ksampler import AEKSampler  # noqa: E402
from aande_pack.nodes.declarations.inputs import ae_inputs  # noqa: E402


def ae_defaults(**overrides):
    kw = {name: spec[1]["default"] for name, spec in ae_inputs().items()}
    kw.update(overrides)
    return kw


def run_node(model, positive, negative, latent, seed=0, steps=4, cfg=7.5, sampler_name="euler",
             scheduler="normal", denoise=1.0, **ae):
    ae = ae_defaults(**ae)
    with torch.inference_mode():
        out, record = AEKSampler().sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                          latent, denoise, **ae)
    return out["samples"], record

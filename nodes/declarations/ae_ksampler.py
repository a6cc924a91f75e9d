"""Node "A&E KSampler": KSampler with Attend-and-Excite, returning the latent and the attention record."""
from __future__ import annotations

from .. import compat
from ..engine.patch import ksample
from .inputs import ae_inputs, optional_inputs, settings_from


class AEKSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD1.x, SD2.x or SDXL model (a UNet with text cross-attention)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                                 "tooltip": "The random seed used for creating the noise."}),
                "steps": ("INT", {"default": 50, "min": 1, "max": 10000,
                                  "tooltip": "Denoising steps (the paper uses 50)."}),
                "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Classifier-free guidance scale (the paper uses 7.5)."}),
                "sampler_name": (compat.sampler_names(), {"default": "ddim", "tooltip":
                    "Sampling algorithm. Single-step samplers (ddim, euler, euler_ancestral, ...) apply A&E exactly; "
                    "multistep ones also run."}),
                "scheduler": (compat.scheduler_names(), {"default": "ddim_uniform", "tooltip":
                    "Noise schedule; ddim + ddim_uniform reproduces the paper's DDIM sampling."}),
                "positive": ("CONDITIONING", {"tooltip": "The prompt whose subjects A&E excites, from 'Select "
                                                         "Subject Tokens'."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative conditioning for CFG."}),
                "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "Amount of denoising; below 1 keeps some of the input latent."}),
                **ae_inputs(),
            },
            "optional": optional_inputs(),
        }

    RETURN_TYPES = ("LATENT", "AE_ATTENTION")
    RETURN_NAMES = ("LATENT", "attention")
    OUTPUT_TOOLTIPS = ("The denoised latent.",
                       "Per A&E step: the subjects' attention maps, the loss and the refinement losses, "
                       "for 'Attention Map Preview'.")
    FUNCTION = "sample"
    CATEGORY = "sampling/attend_and_excite"
    DESCRIPTION = "KSampler with Attend-and-Excite: strengthens the attention of neglected subject tokens."

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
               denoise, subject_tokens=None, **ae):
        return ksample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                       settings_from(ae), legacy_selection=subject_tokens)


NODE_CLASS_MAPPINGS = {"AEKSampler": AEKSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"AEKSampler": "A&E KSampler"}

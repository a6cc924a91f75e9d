"""ComfyUI adapters: the only package of the pack that imports ComfyUI.

declarations/  the nodes, one file each, and their shared inputs
engine/        sampling with A&E: the sampler wrapper, the model patch, the run, the gradient pass
prompt/        prompts as the UNet sees them (token indices) and the token picker's route
preview/       drawing the attention preview
compat.py      every version-sensitive ComfyUI touchpoint
"""
from .declarations import (ae_ksampler, ae_sampler, apply_ae, attention_preview, blip_caption, clip_score,
                           select_tokens)
from .prompt import route

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (select_tokens, ae_ksampler, ae_sampler, apply_ae, attention_preview, clip_score, blip_caption):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

route.register()

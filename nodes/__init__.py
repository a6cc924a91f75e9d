"""ComfyUI adapters: the only package of the pack that imports ComfyUI."""
from . import attention_preview, ksampler_node, sampler_node, select_tokens, token_route

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (select_tokens, ksampler_node, sampler_node, attention_preview):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

token_route.register()

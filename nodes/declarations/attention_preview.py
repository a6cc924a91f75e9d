"""Attention Map Preview: draws what each subject (or prompt) token attends to, from an AE_ATTENTION record."""
import os
import random

import numpy as np
import torch
from PIL import Image

from ...aande_core.heatmap import STEP_GIVEN, STEP_LAST, STEP_MODES, TOKEN_MODES, select_maps
from .. import compat
from ..engine.record_slot import resolve
from ..preview.render import render_preview


class AEAttentionMapPreview:
    """Shows the grid in the node (temp PNG, like Preview Image) and returns it as an IMAGE."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "attention": ("AE_ATTENTION", {"tooltip": "The attention record from an A&E sampler node."}),
                "step": (list(STEP_MODES), {"default": STEP_LAST, "tooltip":
                         "Which maps to draw: those of the last recorded step, their mean over all recorded "
                         "steps, or those of the sampler step given in step_index."}),
                "step_index": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip":
                               f"Sampler step (0-based) to draw when step is '{STEP_GIVEN}'."}),
                "tokens": (list(TOKEN_MODES), {"default": TOKEN_MODES[0], "tooltip":
                           "'subjects': the subject maps as the A&E loss sees them (smoothed); "
                           "'all prompt tokens': the raw map of every token of the prompt."}),
                "opacity": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                            "How strongly the heatmap covers the image (1 = heatmap only)."}),
                "show_loss_plot": ("BOOLEAN", {"default": True, "tooltip":
                                   "Add a tile per sample plotting the A&E loss per step; orange dots are the "
                                   "losses seen while refining the latent."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "The images decoded from the same sampler run, drawn under the "
                                               "heatmaps; connecting it also makes the preview run after sampling."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("preview",)
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = "sampling/attend_and_excite"
    DESCRIPTION = ("Heatmaps of the cross-attention of each subject token (one row per image, one tile per token, "
                   "captioned with the token and its peak attention) and an optional loss-per-step plot.")

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        # A sampler run publishes a new record into the output of 'A&E Sampler' / 'Apply Attend-and-Excite'
        # without that node running again, so an unchanged input link can still carry new maps.
        return float("nan")

    def preview(self, attention, step, step_index, tokens, opacity, show_loss_plot, image=None):
        record = resolve(attention)
        selection = select_maps(record, step, step_index, tokens)
        pixels = None if image is None else image.detach().float().cpu().numpy()
        grid, _ = render_preview(record, selection, pixels, opacity, show_loss_plot)
        return {"ui": {"images": [_save_temp(grid)]},
                "result": (torch.from_numpy(grid.astype(np.float32) / 255.0)[None],)}


def _save_temp(grid: np.ndarray) -> dict:
    """Save like ComfyUI's PreviewImage: a PNG in the temp folder, shown by the frontend as type 'temp'."""
    prefix = "aande_preview_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    folder, file, subfolder = compat.temp_image_path(prefix, grid.shape[1], grid.shape[0])
    Image.fromarray(grid).save(os.path.join(folder, file), compress_level=1)
    return {"filename": file, "subfolder": subfolder, "type": "temp"}


NODE_CLASS_MAPPINGS = {"AEAttentionMapPreview": AEAttentionMapPreview}
NODE_DISPLAY_NAME_MAPPINGS = {"AEAttentionMapPreview": "Attention Map Preview"}

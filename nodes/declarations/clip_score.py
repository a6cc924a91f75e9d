"""Node "CLIP Score (A&E paper)": the paper's CLIP scores of each image (aande_metrics/clip_similarity.py), with
the CLIP of a folder under ComfyUI's models/aande_clip/ (metric_models.py)."""
from __future__ import annotations

from ...aande_metrics.halves import split_halves
from .. import compat
from .metric_models import CLIP_DEFAULT, CLIP_KEY, load_clip, model_input
from .score_table import CATEGORY, value_table

class AEClipScore:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to score, e.g. from VAE Decode; each gets its own "
                                                "scores."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "placeholder": "a cat and a frog",
                                      "tooltip": "The prompt the images were made from. Its halves (split on "
                                                 "' and ', else ' with ') give the minimum-object score."}),
                "clip_model": model_input(CLIP_KEY, CLIP_DEFAULT, "CLIP ViT-B/16 in the Hugging Face layout of "
                                                                  "openai/clip-vit-base-patch16"),
            }
        }

    RETURN_TYPES = ("FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = ("full", "min_half", "table")
    OUTPUT_IS_LIST = (True, True, False)
    OUTPUT_TOOLTIPS = ("Per image: CLIP similarity of the image with the whole prompt (the paper's full-prompt "
                       "score; the paper reports its mean).",
                       "Per image: the smaller of the similarities with the prompt's two halves (the paper's "
                       "minimum-object score; the paper reports its mean).",
                       "The per-image scores of both halves and their means, as shown in the node.")
    FUNCTION = "score"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    DESCRIPTION = ("The Attend-and-Excite paper's CLIP scores (CLIP ViT-B/16, 80 ImageNet prompt templates): each "
                   "image's similarity with the full prompt and with the weaker of its two halves.")

    def score(self, images, prompt, clip_model):
        first, second = split_halves(prompt)  # a prompt without two halves fails before the model loads
        scorer = load_clip(clip_model)
        bar = compat.progress_bar(images.shape[0])
        scores = []
        for image in images.split(1):
            compat.throw_if_interrupted()
            scores += scorer.score(image, prompt)
            bar.update(1)
        table = value_table(f"CLIP ViT-B/16 ({clip_model}), prompt {prompt!r}, halves {first!r} | {second!r}",
                            ("image", "full", "first_half", "second_half", "min_half"),
                            [(s["clip_full"], s["clip_first_half"], s["clip_second_half"], s["clip_min_half"])
                             for s in scores])
        return {"ui": {"text": [table]},
                "result": ([s["clip_full"] for s in scores], [s["clip_min_half"] for s in scores], table)}


NODE_CLASS_MAPPINGS = {"AEClipScore": AEClipScore}
NODE_DISPLAY_NAME_MAPPINGS = {"AEClipScore": "CLIP Score (A&E paper)"}

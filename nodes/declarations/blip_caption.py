"""Node "BLIP Caption Score (A&E paper)": BLIP's caption of each image and its CLIP similarity with the prompt
(aande_metrics/blip_caption.py and clip_similarity.py), the paper's text-text metric, with BLIP from a folder under
ComfyUI's models/aande_blip/ and CLIP from one under models/aande_clip/ (metric_models.py)."""
from __future__ import annotations

from .. import compat
from .metric_models import BLIP_DEFAULT, BLIP_KEY, CLIP_DEFAULT, CLIP_KEY, load_blip, load_clip, model_input
from .score_table import CATEGORY, value_table


class AEBlipCaptionScore:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to caption and score, e.g. from VAE Decode."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "placeholder": "a cat and a frog",
                                      "tooltip": "The prompt the images were made from; each caption is compared "
                                                 "with it."}),
                "blip_model": model_input(BLIP_KEY, BLIP_DEFAULT, "BLIP captioning (base) in the Hugging Face "
                                                                  "layout of Salesforce/blip-image-captioning-base"),
                "clip_model": model_input(CLIP_KEY, CLIP_DEFAULT, "CLIP ViT-B/16 in the Hugging Face layout of "
                                                                  "openai/clip-vit-base-patch16, which compares "
                                                                  "caption and prompt"),
            }
        }

    RETURN_TYPES = ("STRING", "FLOAT")
    RETURN_NAMES = ("caption", "similarity")
    OUTPUT_IS_LIST = (True, True)
    OUTPUT_TOOLTIPS = ("Per image: BLIP's caption (beam search with LAVIS's defaults, the 'a picture of ' prompt "
                       "removed).",
                       "Per image: CLIP similarity of the caption (as it is) with the prompt (in the 80 ImageNet "
                       "templates); the paper reports its mean.")
    FUNCTION = "score"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    DESCRIPTION = ("The Attend-and-Excite paper's BLIP metric: BLIP captions each image, and CLIP ViT-B/16 measures "
                   "how similar each caption is to the prompt.")

    def score(self, images, prompt, blip_model, clip_model):
        captioner, scorer = load_blip(blip_model), load_clip(clip_model)
        scorer.text_feature(prompt)  # an empty or too long prompt fails before the captioning, not after it
        bar = compat.progress_bar(images.shape[0])
        captions = []
        for image in images.split(1):
            compat.throw_if_interrupted()
            captions += captioner.caption(image)
            bar.update(1)
        similarity = scorer.caption_similarity(captions, prompt)
        table = value_table(f"BLIP ({blip_model}) captions vs prompt {prompt!r}, CLIP ViT-B/16 ({clip_model})",
                            ("image", "similarity", "caption"), list(zip(similarity, captions)))
        return {"ui": {"text": [table]}, "result": (captions, similarity)}


NODE_CLASS_MAPPINGS = {"AEBlipCaptionScore": AEBlipCaptionScore}
NODE_DISPLAY_NAME_MAPPINGS = {"AEBlipCaptionScore": "BLIP Caption Score (A&E paper)"}

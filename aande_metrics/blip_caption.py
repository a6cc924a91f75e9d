"""BlipCaptioner: the BLIP captions of the paper's text-text metric, with LAVIS's default decoding.

The paper captions each image with LAVIS's blip_caption / base_coco model called as `model.generate({"image":
image})`, i.e. with every decoding argument at its default, then compares the caption with the prompt through
CLIP (clip_similarity.ClipScorer.caption_similarity). Those defaults decide the captions, so they are written
down here from LAVIS and passed explicitly to transformers' BlipForConditionalGeneration, whose own generation
defaults (and a model folder's generation config) differ.
"""
from __future__ import annotations

import os

import torch

from .model_folder import BLIP_FOLDER, load_pretrained
from .preprocess import blip_pixels

# lavis/configs/models/blip_caption_base_coco.yaml, model.prompt: the decoder starts from this text, and
# BlipCaption.generate cuts as many characters off the front of every decoded caption.
CAPTION_PROMPT = "a picture of "

# lavis/models/blip_models/blip_caption.py, BlipCaption.generate's defaults (use_nucleus_sampling=False, so
# XBertLMHeadDecoder.generate_from_encoder in lavis/models/med.py runs beam search with exactly these).
# max_length and min_length count the prompt's tokens too, as in LAVIS.
LAVIS_DECODING = {"num_beams": 3, "max_length": 30, "min_length": 10, "repetition_penalty": 1.0}

# What LAVIS's beam search got from transformers' defaults without naming it (LAVIS's decoder config is a plain
# BertConfig): pinned so that a model folder's generation config cannot change the captions.
DECODING = {**LAVIS_DECODING, "do_sample": False, "length_penalty": 1.0, "early_stopping": False,
            "no_repeat_ngram_size": 0, "num_return_sequences": 1}


class BlipCaptioner:
    """A BLIP captioning model and its BERT tokenizer."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device="cpu", dtype=torch.float32) -> "BlipCaptioner":
        """Load BLIP from a local folder in the layout of Salesforce/blip-image-captioning-base, never downloading.

        dtype: LAVIS ran BLIP in float32 (its checkpoints are float32 and load_model_and_preprocess keeps them).
        """
        model, tokenizer = load_pretrained(folder, BLIP_FOLDER, "BlipForConditionalGeneration")
        return cls(model.to(device=device, dtype=dtype), tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def caption(self, images: torch.Tensor) -> list[str]:
        """One caption per image of a ComfyUI IMAGE batch (B, H, W, 3) in 0..1, without the "a picture of " prompt.

        As LAVIS: the prompt is tokenized as "[CLS] a picture of [SEP]"; BlipForConditionalGeneration.generate
        puts the decoder's start token in place of [CLS] and drops [SEP], as BlipCaption.generate does; the
        decoded text loses len(CAPTION_PROMPT) characters from its front.
        """
        size = self.model.config.vision_config.image_size
        pixels = blip_pixels(images.to(self.device), size).to(self.model.dtype)
        prompt = self.tokenizer([CAPTION_PROMPT] * pixels.shape[0], return_tensors="pt").to(self.device)
        out = self.model.generate(pixel_values=pixels, input_ids=prompt.input_ids, **DECODING)
        # LAVIS decoded with the transformers of its time, which cleaned up tokenization spaces by default
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=True)
        return [text[len(CAPTION_PROMPT):] for text in texts]

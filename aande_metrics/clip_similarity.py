"""ClipScorer: the A&E paper's CLIP image-text and text-text similarities with CLIP ViT-B/16.

The paper (section 5, metrics/compute_clip_similarity.py) scores an image by the cosine similarity of its CLIP
image feature with the prompt's text feature (full-prompt score) and with each half's text feature, keeping the
weaker half (minimum-object score, which exposes a neglected subject). Its BLIP metric
(metrics/blip_captioning_and_clip_similarity.py) compares a caption's CLIP text feature, taken from the bare
caption, with the prompt's feature. A text feature of a prompt is the mean of the L2-normalised features of the 80
ImageNet templates filled with it, normalised again (templates.py).

The paper ran OpenAI's `clip` package; this is the same network from a local Hugging Face folder
(openai/clip-vit-base-patch16). How the two differ is listed in README.md, "Evaluation nodes".
"""
from __future__ import annotations

import os

import torch

from .halves import split_halves
from .model_folder import CLIP_FOLDER, load_pretrained
from .preprocess import clip_pixels
from .templates import fill_templates


class ClipScorer:
    """A CLIP model and tokenizer, with the prompt features cached (a prompt is scored against many images)."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._text_features: dict[str, torch.Tensor] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device="cpu", dtype: torch.dtype | None = None) -> "ClipScorer":
        """Load a CLIP from a local folder in the layout of openai/clip-vit-base-patch16, never downloading.

        dtype: None for the paper's: its `clip.load` ran CLIP in float16 on CUDA and in float32 elsewhere.
        """
        if dtype is None:
            dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
        model, tokenizer = load_pretrained(folder, CLIP_FOLDER, "CLIPModel")
        return cls(model.to(device=device, dtype=dtype), tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return self.model.config.vision_config.image_size

    @torch.no_grad()
    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised text features, in the model's dtype (the official code normalises in it too)."""
        context = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        if tokens.input_ids.shape[1] > context:
            longest = max(texts, key=lambda t: len(self.tokenizer(t).input_ids))
            raise ValueError(f"the text {longest!r} is longer than CLIP's {context} tokens (start and end token "
                             f"included), as OpenAI's clip.tokenize would refuse it; shorten the prompt")
        tokens = tokens.to(self.device)
        # text_model + text_projection rather than get_text_features, whose return type changed in transformers 5.
        pooled = self.model.text_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).pooler_output
        features = self.model.text_projection(pooled)
        return features / features.norm(dim=-1, keepdim=True)

    def text_feature(self, prompt: str) -> torch.Tensor:
        """(D,) float32: the templated text feature of `prompt` (mean of the normalised template features,
        normalised again), computed once per prompt."""
        if not prompt.strip():
            raise ValueError("the prompt is empty: give the prompt the images were generated from")
        if prompt not in self._text_features:
            mean = self._encode_texts(fill_templates(prompt)).mean(dim=0)
            self._text_features[prompt] = (mean / mean.norm()).float()
        return self._text_features[prompt]

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) float32 L2-normalised image features of a ComfyUI IMAGE batch (B, H, W, 3) in 0..1."""
        pixels = clip_pixels(images.to(self.device), self.image_size).to(self.model.dtype)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        features = self.model.visual_projection(pooled)
        return (features / features.norm(dim=-1, keepdim=True)).float()

    def score(self, images: torch.Tensor, prompt: str) -> list[dict[str, float]]:
        """Per image: clip_full (with the whole prompt), clip_first_half, clip_second_half, and clip_min_half, the
        smaller of the two halves. The paper averages clip_full and clip_min_half over all images of a prompt."""
        first, second = split_halves(prompt)  # before any model work: an unsplittable prompt is an input error
        texts = torch.stack([self.text_feature(prompt), self.text_feature(first), self.text_feature(second)])
        similarity = (self.image_features(images) @ texts.T).tolist()
        return [{"clip_full": full, "clip_first_half": a, "clip_second_half": b, "clip_min_half": min(a, b)}
                for full, a, b in similarity]

    def caption_similarity(self, captions: list[str], prompt: str) -> list[float]:
        """Cosine similarity of each caption's CLIP text feature, taken from the bare caption as the paper does,
        with the prompt's templated feature."""
        if not captions:
            return []
        features = self._encode_texts(list(captions)).float()
        return (features @ self.text_feature(prompt)).tolist()

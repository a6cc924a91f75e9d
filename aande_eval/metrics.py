"""The image metrics a run computes per batch. A metric is any object with a `name` and
`measure(images, prompt) -> [dict per image]` (images: (B, H, W, 3) float in 0..1; prompt: prompts.Prompt), whose
dicts hold numbers, booleans or strings: the paper's CLIP and BLIP scores here, and any other metric named as
`module:factory` on the command line (e.g. the toy world's exact judge)."""
from __future__ import annotations

import importlib

from .prompts import Prompt


class ClipMetric:
    """CLIP ViT-B/16 similarity of each image with the full prompt and with each half (and the weaker half)."""
    name = "clip"

    def __init__(self, scorer):
        self.scorer = scorer

    def measure(self, images, prompt: Prompt) -> list[dict]:
        return self.scorer.score(images, prompt.text)


class BlipMetric:
    """BLIP's caption of each image and the CLIP similarity of that caption with the prompt."""
    name = "blip"

    def __init__(self, captioner, scorer):
        self.captioner, self.scorer = captioner, scorer

    def measure(self, images, prompt: Prompt) -> list[dict]:
        captions = self.captioner.caption(images)
        similarity = self.scorer.caption_similarity(captions, prompt.text)
        return [{"caption": c, "blip_similarity": s} for c, s in zip(captions, similarity)]


def paper_metrics(names, clip_folder, blip_folder, device) -> list:
    """The metrics among "clip" and "blip" that `names` asks for, with their models loaded once."""
    out, scorer = [], None
    if not names:
        return out
    from ..aande_metrics.blip_caption import BlipCaptioner
    from ..aande_metrics.clip_similarity import ClipScorer
    if {"clip", "blip"} & set(names):
        scorer = ClipScorer.from_folder(clip_folder, device=device)  # in the paper's dtype for the device
    if "clip" in names:
        out.append(ClipMetric(scorer))
    if "blip" in names:
        out.append(BlipMetric(BlipCaptioner.from_folder(blip_folder, device=device), scorer))
    return out


def plugin_metric(spec: str):
    """A metric from "package.module:factory" (factory() returns the metric)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"a metric plugin is given as module:factory, e.g. aande_pack.toyworld.judge:Judge; got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load the metric {spec!r}: {e}") from None
    return factory()

"""The model folders of the score nodes (clip_score.py, blip_caption.py) and their loaders.

Each metric model is a folder in the layout of its Hugging Face repository under ComfyUI's models/<key>/
(CLIP: models/aande_clip/, openai/clip-vit-base-patch16; BLIP: models/aande_blip/,
Salesforce/blip-image-captioning-base), registered with folder_paths so that extra_model_paths.yaml can add
more. A model is loaded once and kept while the same folder is picked. It runs where ComfyUI runs models: CLIP in
the paper's dtype for that device (aande_metrics/clip_similarity.py), BLIP in float32, as LAVIS ran it.
"""
from __future__ import annotations

import functools
import os

import torch

from ...aande_metrics.blip_caption import BlipCaptioner
from ...aande_metrics.clip_similarity import ClipScorer
from .. import compat

CLIP_KEY = "aande_clip"                    # models/aande_clip/<folder>
CLIP_DEFAULT = "clip-vit-base-patch16"     # the folder name the README tells users to download into

compat.register_model_folder(CLIP_KEY)


def model_choices(key: str, default: str) -> list[str]:
    """The model folders (sub-folders of every path registered under `key`), or `default` alone when there is none
    yet, so that the node still runs and its error says what to download where."""
    names = {entry.name for base in compat.model_folder_paths(key) if os.path.isdir(base)
             for entry in os.scandir(base) if entry.is_dir() and not entry.name.startswith(".")}
    return sorted(names) or [default]


def model_folder(key: str, name: str) -> str:
    """The path of the folder `name` in the first registered path that has it, else in the first path (where the
    loader's error then asks for it)."""
    bases = compat.model_folder_paths(key)
    return next((os.path.join(b, name) for b in bases if os.path.isdir(os.path.join(b, name))),
                os.path.join(bases[0], name))


def model_input(key: str, default: str, what: str) -> tuple:
    """A model-folder COMBO; INPUT_TYPES runs whenever the frontend reloads the node definitions, so a folder
    added later shows up after a refresh."""
    return (model_choices(key, default), {"tooltip": f"{what}: a folder in ComfyUI's models/{key}/ (refresh the "
                                                     f"page after adding one)."})


@functools.lru_cache(maxsize=1)
def _clip(folder: str, device: str) -> ClipScorer:
    return ClipScorer.from_folder(folder, device=device)


def load_clip(name: str) -> ClipScorer:
    """The CLIP of models/aande_clip/<name> on ComfyUI's device, in the paper's dtype for it."""
    return _clip(model_folder(CLIP_KEY, name), str(compat.torch_device()))


BLIP_KEY = "aande_blip"                         # models/aande_blip/<folder>
BLIP_DEFAULT = "blip-image-captioning-base"     # the folder name the README tells users to download into

compat.register_model_folder(BLIP_KEY)


@functools.lru_cache(maxsize=1)
def _blip(folder: str, device: str) -> BlipCaptioner:
    return BlipCaptioner.from_folder(folder, device=device, dtype=torch.float32)


def load_blip(name: str) -> BlipCaptioner:
    """The BLIP of models/aande_blip/<name> on ComfyUI's device, in float32."""
    return _blip(model_folder(BLIP_KEY, name), str(compat.torch_device()))

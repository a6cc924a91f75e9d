"""Node "CLIP Score (A&E paper)": the paper's CLIP scores of each image (aande_metrics/clip_similarity.py).

The CLIP model is a folder under ComfyUI's models/aande_clip/ (openai/clip-vit-base-patch16), loaded once and
kept while the same folder is picked. It runs where ComfyUI runs models, in float16 there unless that is the
CPU, as the paper's `clip.load` did. The BLIP node shares the folder helpers and the CLIP loader below.
"""
from __future__ import annotations

import functools
import os

import torch

from ...aande_metrics.clip_similarity import ClipScorer
from ...aande_metrics.halves import split_halves
from .. import compat

CATEGORY = "sampling/attend_and_excite/evaluation"
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
def _clip(folder: str, device: str, dtype: torch.dtype) -> ClipScorer:
    return ClipScorer.from_folder(folder, device=device, dtype=dtype)


def load_clip(name: str) -> ClipScorer:
    """The CLIP of models/aande_clip/<name> on ComfyUI's device; float16 unless that is the CPU, as clip.load."""
    device = compat.torch_device()
    dtype = torch.float32 if torch.device(device).type == "cpu" else torch.float16
    return _clip(model_folder(CLIP_KEY, name), str(device), dtype)


def value_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> str:
    """A plain-text table under `title`: one row per image ("#0", "#1", ... as batch indices count), then the mean
    of each number column; numbers with 4 decimals."""
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [header] + [(f"#{i}", *map(cell, row)) for i, row in enumerate(rows)]
    cells.append(("mean", *(cell(sum(col) / len(col)) if all(isinstance(v, float) for v in col) else ""
                            for col in zip(*rows))))
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    return "\n".join([title] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells])


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

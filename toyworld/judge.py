"""The exact judge: which shapes, in which colours, an image of the toy world holds, and whether that answers a
prompt (each subject present, both present, each colour bound to its own subject).

Why it can be exact: the world draws flat palette colours on dark backgrounds, objects never touch, and the five
shapes differ in features that survive pixelation (measured over the generator's whole size range):
a ring has a hole; a star is far from convex (solidity of its pixels against their convex hull <= 0.71, every
other shape >= 0.80); a square fills its bounding box (1.0, a circle <= 0.88); a triangle's top third is narrow
(top/bottom row width <= 0.33, a circle's >= 0.62). Thresholds sit between those ranges.

Pipeline per image: average-pool to the world's size (decoded images are integer multiples of it), label each
bright pixel with its nearest palette colour (pixels far from every colour stay unlabelled), connected
components per colour, drop specks, classify each component's shape.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from . import world

FOREGROUND = 0.45   # a pixel is an object's when its brightest channel reaches this (backgrounds stay < 0.25)
MAX_COLOUR_DISTANCE = 0.35  # RGB distance to the nearest palette colour beyond which a pixel gets no colour
MIN_AREA = 12       # components smaller than this (pixels at world size) are specks, not objects
RING_HOLE = 4       # enclosed background pixels that make a ring (rings hold >= 16)
STAR_SOLIDITY = 0.76
SQUARE_FILL = 0.94
TRIANGLE_TAPER = 0.47
ASPECT = (0.5, 2.0)  # bounding boxes outside this width/height range are not shapes of the world

_PALETTE_NAMES = tuple(world.COLOURS)
_PALETTE = np.array([world.COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Found:
    shape: str      # one of world.SHAPES, or "blob" for a component that is none of them
    colour: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in world pixels, inclusive
    area: int

    def describe(self) -> str:
        x0, y0, x1, y1 = self.bbox
        return f"{self.colour} {self.shape} [{x0},{y0},{x1},{y1}]"


def to_world_size(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) with H, W integer multiples of world.SIZE -> (SIZE, SIZE, 3) by block averaging."""
    h, w = image.shape[:2]
    if image.ndim != 3 or image.shape[2] != 3 or h != w or h % world.SIZE:
        raise ValueError(f"the judge reads (H, W, 3) images whose side is a multiple of {world.SIZE}; got "
                         f"{tuple(image.shape)}")
    k = h // world.SIZE
    return image.reshape(world.SIZE, k, world.SIZE, k, 3).mean(axis=(1, 3))


def _solidity(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        return float(mask.sum() / ConvexHull(corners).volume)
    except QhullError:  # degenerate (a line of pixels)
        return 1.0


def classify(mask: np.ndarray) -> str:
    """The shape of one component (bool mask, cropped or not)."""
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if not ASPECT[0] <= w / h <= ASPECT[1]:
        return "blob"
    filled = ndimage.binary_fill_holes(mask)
    if filled.sum() - mask.sum() >= RING_HOLE:
        return "ring"
    if _solidity(filled) < STAR_SOLIDITY:
        return "star"
    if filled.sum() / (h * w) >= SQUARE_FILL:
        return "square"
    rows = filled.sum(axis=1)[ys.min():ys.max() + 1]
    third = max(1, len(rows) // 3)
    if rows[:third].mean() / rows[-third:].mean() <= TRIANGLE_TAPER:
        return "triangle"
    return "circle"


def border_brightness(image: np.ndarray) -> float:
    """The median, over the outermost ring of pixels at world size, of each pixel's brightest channel: how bright
    an image's background is (on 3,000 renders of the world at most 0.164; a bright or coloured
    border is a background the world never draws). The median ignores objects touching the border."""
    img = to_world_size(np.asarray(image, dtype=np.float32)).max(axis=-1)
    ring = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    return round(float(np.median(ring)), 4)


def find_objects(image: np.ndarray) -> list[Found]:
    """The objects in one image ((H, W, 3) in 0..1, side a multiple of world.SIZE), left to right."""
    img = to_world_size(np.asarray(image, dtype=np.float32))
    distance = np.linalg.norm(img[:, :, None, :] - _PALETTE[None, None], axis=-1)
    label = distance.argmin(axis=-1)
    coloured = (img.max(axis=-1) >= FOREGROUND) & (distance.min(axis=-1) <= MAX_COLOUR_DISTANCE)
    found = []
    for index, colour in enumerate(_PALETTE_NAMES):
        components, n = ndimage.label(coloured & (label == index), structure=np.ones((3, 3), bool))
        for k, box in enumerate(ndimage.find_objects(components), 1):
            mask = components[box] == k
            if mask.sum() < MIN_AREA:
                continue
            found.append(Found(classify(mask), colour, (box[1].start, box[0].start, box[1].stop - 1,
                                                        box[0].stop - 1), int(mask.sum())))
    return sorted(found, key=lambda f: (f.bbox[0], f.bbox[1]))


def answer(found: list[Found], prompt: world.Prompt) -> dict:
    """The judge's verdict on one image for one prompt.

    present_k: the k-th subject's shape is there (for a repeated shape, as many of it as mentioned so far);
    both: every subject present; binding (None when the prompt names no colour): the subjects can be given
    distinct objects, each of its shape and, where the prompt names one, its colour.
    """
    shapes = [f.shape for f in found]
    present, mentioned = [], {}
    for s in prompt.subjects:
        mentioned[s.shape] = mentioned.get(s.shape, 0) + 1
        present.append(shapes.count(s.shape) >= mentioned[s.shape])
    binding = None
    if prompt.has_colours:
        binding = any(all(f.shape == s.shape and s.colour in (None, f.colour) for s, f in zip(prompt.subjects, pick))
                      for pick in itertools.permutations(found, len(prompt.subjects)))
    return {"judge_present_1": present[0],
            "judge_present_2": present[1] if len(present) > 1 else None,
            "judge_both": all(present),
            "judge_binding": binding,
            "judge_count": len(found),
            "judge_objects": "; ".join(f.describe() for f in found) or "(none)"}


def verdict(image: np.ndarray, found: list[Found], prompt: world.Prompt) -> dict:
    """answer()'s verdict on `found` (find_objects(image)) and the image's border brightness."""
    return {**answer(found, prompt), "judge_background": border_brightness(image)}


class Judge:
    """The metric the evaluation runner calls (aande_eval: `--metric aande_pack.toyworld.judge:Judge`):
    measure(images, prompt) -> one dict per image (verdict())."""
    name = "judge"

    def measure(self, images: torch.Tensor, prompt) -> list[dict]:
        """images: (B, H, W, 3) float in 0..1 (ComfyUI's IMAGE), H = W a multiple of world.SIZE. prompt: the
        batch's prompt (a str, or an object with .text such as aande_eval's Prompt), or a sequence of one str per
        image; in the world's grammar (world.parse_prompt)."""
        if isinstance(prompt, str) or hasattr(prompt, "text"):
            texts = [getattr(prompt, "text", prompt)] * images.shape[0]
        else:
            texts = list(prompt)
        if images.ndim != 4 or len(texts) != images.shape[0]:
            raise ValueError(f"the judge needs (B, H, W, 3) images and one prompt for the batch or per image; got "
                             f"{tuple(images.shape)} and {len(texts)} prompts")
        arrays = images.detach().to("cpu", torch.float32).numpy()
        return [verdict(a, find_objects(a), world.parse_prompt(t)) for a, t in zip(arrays, texts)]

"""The toy world: 32x32 images of one or two coloured shapes on a dark background, with captions in the paper's
prompt templates, and the held-out compositions the benchmark asks for.

Why this world: whether an image shows "a red circle and a blue square" can be judged exactly (judge.py), so
subject neglect and attribute binding become counts instead of CLIP scores. Every caption word is one SD1 CLIP
token (the test checks it against ComfyUI's bundled tokenizer), so the subjects of a prompt are its shape
nouns, one token each, as in the paper's prompts.

Held-out plan (fixed here, chosen before any model was trained): training never shows, in one image,
- two shapes of a pair in HELD_OUT_SHAPE_PAIRS (whatever their colours, whatever the caption), nor
- the two coloured shapes of a combination in HELD_OUT_COLOUR_COMBOS (either order).
Every shape, colour and coloured shape still appears in training, alone and beside others. BENCHMARK_PROMPTS
asks for exactly these compositions, in four categories modelled on the paper's (animals, animals_objects,
objects).

Everything is a pure function of a seed: `draw_scene(rng)` takes a numpy Generator, `render(scene)` needs no
randomness (texture noise has its own seed inside the scene).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIZE = 32  # image side in pixels; the VAE maps it to a 4x32x32 latent, decoded at 8x: 256x256

SHAPES = ("circle", "square", "triangle", "star", "ring")
COLOURS = {  # RGB in 0..1, far apart from each other and from every background
    "red": (0.90, 0.16, 0.14),
    "green": (0.18, 0.74, 0.24),
    "blue": (0.18, 0.36, 0.96),
    "yellow": (0.96, 0.86, 0.16),
    "purple": (0.62, 0.24, 0.86),
    "white": (0.94, 0.94, 0.94),
}
BACKGROUNDS = ((0.10, 0.10, 0.11), (0.07, 0.09, 0.15), (0.14, 0.11, 0.08), (0.08, 0.13, 0.10))
TEXTURES = ("plain", "noise", "gradient")
WORDS = frozenset({"a", "and", "with", *SHAPES, *COLOURS})  # every word a caption can hold

RADIUS = (4.5, 6.5)       # half-extent of a shape in pixels (uniform); a star's points reach STAR_OUTER x further
STAR_OUTER, STAR_INNER = 1.3, 0.55  # star radii in units of RADIUS (deep notches: a star stays non-convex when small)
GAP = 2                   # objects are at least this many pixels apart (Chebyshev), so they never touch
COLOUR_JITTER = 0.04      # per-channel uniform jitter of an object's colour
CAPTION_DROP = 0.10       # share of training captions replaced by "" (classifier-free guidance)
ONE_OBJECT = 0.4          # share of training scenes with one object

HELD_OUT_SHAPE_PAIRS = (("circle", "square"), ("triangle", "star"), ("square", "ring"))
# (colour, shape, colour, shape): on shape pairs that training does show together; order = prompt order
HELD_OUT_COLOUR_COMBOS = (
    ("blue", "circle", "green", "triangle"), ("green", "circle", "purple", "triangle"),
    ("white", "circle", "purple", "triangle"), ("purple", "circle", "blue", "triangle"),
    ("yellow", "star", "blue", "circle"), ("blue", "star", "purple", "circle"),
    ("purple", "circle", "green", "star"), ("blue", "circle", "green", "star"),
    ("blue", "ring", "white", "circle"), ("green", "circle", "yellow", "ring"),
    ("green", "ring", "purple", "circle"), ("green", "ring", "white", "circle"),
    ("blue", "square", "purple", "triangle"), ("purple", "triangle", "yellow", "square"),
    ("green", "triangle", "yellow", "square"), ("white", "star", "red", "square"),
    ("yellow", "star", "white", "square"), ("green", "star", "red", "square"),
    ("blue", "triangle", "white", "ring"), ("purple", "triangle", "yellow", "ring"),
    ("red", "ring", "green", "triangle"), ("purple", "star", "white", "ring"),
    ("green", "star", "yellow", "ring"), ("purple", "star", "yellow", "ring"),
)
# the same shape pairs with colours, for the "coloured" category (their shape pair is held out anyway)
_HELD_PAIR_COLOURS = (
    ("red", "circle", "purple", "square"), ("white", "square", "green", "circle"),
    ("red", "circle", "green", "square"), ("green", "square", "blue", "circle"),
    ("red", "triangle", "blue", "star"), ("blue", "star", "red", "triangle"),
    ("purple", "triangle", "yellow", "star"), ("white", "star", "yellow", "triangle"),
    ("white", "square", "red", "ring"), ("purple", "ring", "white", "square"),
    ("red", "square", "white", "ring"), ("red", "ring", "purple", "square"),
)
_HELD_PAIR_ONE_COLOUR = (("circle", "yellow", "square"), ("square", "yellow", "circle"),
                         ("triangle", "yellow", "star"), ("star", "green", "triangle"),
                         ("square", "white", "ring"), ("ring", "blue", "square"))


def _both_orders(pairs):
    return [p for a, b in pairs for p in ((a, b), (b, a))]


BENCHMARK_PROMPTS = {
    # paper "animals": two bare nouns never seen together
    "shapes": [f"a {a} and a {b}" for a, b in _both_orders(HELD_OUT_SHAPE_PAIRS)],
    # paper "animals_objects": "with", and a bare noun beside a coloured one
    "shapes_with": [f"a {a} with a {b}" for a, b in _both_orders(HELD_OUT_SHAPE_PAIRS)]
                   + [f"a {a} and a {c} {b}" for a, c, b in _HELD_PAIR_ONE_COLOUR],
    # paper "objects": two coloured nouns; here on shape pairs never seen together
    "coloured": [f"a {c1} {s1} and a {c2} {s2}" for c1, s1, c2, s2 in _HELD_PAIR_COLOURS],
    # two coloured nouns whose shapes training shows together, but never in these colours
    "colour_combos": [f"a {c1} {s1} and a {c2} {s2}" for c1, s1, c2, s2 in HELD_OUT_COLOUR_COMBOS],
}
# prompts of the training distribution, for the sanity grid: the model should get these right without A&E
TRAINING_PROMPTS = ("a red circle", "a blue star", "a ring", "a green triangle and a white circle",
                    "a yellow square and a purple star", "a triangle with a ring", "a circle and a star",
                    "a red star and a blue ring")


@dataclass(frozen=True)
class Subject:
    shape: str
    colour: str | None  # None: the prompt names no colour for it


@dataclass(frozen=True)
class Prompt:
    text: str
    subjects: tuple[Subject, ...]
    relation: str | None  # "and" / "with" between two subjects; None for one

    @property
    def has_colours(self) -> bool:
        return any(s.colour for s in self.subjects)

    @property
    def subject_words(self) -> str:
        """The `subjects` input of Select Subject Tokens: the shape nouns ("square, square#2" for a repeat)."""
        seen: dict[str, int] = {}
        words = []
        for s in self.subjects:
            seen[s.shape] = seen.get(s.shape, 0) + 1
            words.append(s.shape if seen[s.shape] == 1 else f"{s.shape}#{seen[s.shape]}")
        return ", ".join(words)

    @property
    def token_indices(self) -> tuple[int, ...]:
        """CLIP positions of the shape nouns (start token = 0; every word is one token)."""
        words = self.text.split()
        return tuple(i + 1 for i, w in enumerate(words) if w in SHAPES)


def parse_prompt(text: str) -> Prompt:
    """A caption of this world -> its subjects: "a [colour] shape [(and|with) a [colour] shape]"."""
    words = text.split()

    def noun_phrase(i):
        if i >= len(words) or words[i] != "a":
            raise ValueError
        colour = words[i + 1] if i + 1 < len(words) and words[i + 1] in COLOURS else None
        j = i + 1 + (colour is not None)
        if j >= len(words) or words[j] not in SHAPES:
            raise ValueError
        return Subject(words[j], colour), j + 1

    try:
        first, i = noun_phrase(0)
        if i == len(words):
            return Prompt(text, (first,), None)
        relation = words[i]
        if relation not in ("and", "with"):
            raise ValueError
        second, i = noun_phrase(i + 1)
        if i != len(words):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"{text!r} is not a prompt of the toy world: use 'a [colour] shape' or 'a [colour] "
                         f"shape and|with a [colour] shape' with shapes {', '.join(SHAPES)} and colours "
                         f"{', '.join(COLOURS)}") from None
    return Prompt(text, (first, second), relation)


def held_out_prompts() -> list[tuple[str, str]]:
    """(category, prompt) of every benchmark prompt, in a fixed order."""
    return [(category, p) for category, prompts in BENCHMARK_PROMPTS.items() for p in prompts]


# ---------------------------------------------------------------- scenes

@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    rgb: tuple[float, float, float]  # the colour with its jitter
    cx: float                        # centre in pixels (x right, y down; pixel (i, j) has centre (j+.5, i+.5))
    cy: float
    r: float


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: tuple[float, float, float]
    texture: str
    texture_seed: int
    caption: str


def is_held_out(objects) -> bool:
    """Whether a set of objects shows a held-out composition (a held-out shape pair or colour combination)."""
    if len(objects) < 2:
        return False
    a, b = objects[0], objects[1]
    pair = {a.shape, b.shape}
    if any(pair == {s, t} for s, t in HELD_OUT_SHAPE_PAIRS):
        return True
    coloured = {(a.colour, a.shape), (b.colour, b.shape)}
    return any(coloured == {(c1, s1), (c2, s2)} for c1, s1, c2, s2 in HELD_OUT_COLOUR_COMBOS)


_YY, _XX = np.mgrid[0:SIZE, 0:SIZE] + 0.5  # pixel centres


def _inside_star(dx, dy, r):
    """Points inside the star: fold each point's angle into the half-sector between an outer vertex (angle 0)
    and the next inner vertex (36 degrees), then test the side of that edge."""
    outer, inner = STAR_OUTER * r, STAR_INNER * r
    rho = np.hypot(dx, dy)
    psi = np.mod(np.arctan2(dy, dx) + math.pi / 2, 2 * math.pi / 5)
    psi = np.minimum(psi, 2 * math.pi / 5 - psi)
    px, py = rho * np.cos(psi), rho * np.sin(psi)
    ix, iy = inner * math.cos(math.pi / 5), inner * math.sin(math.pi / 5)
    # the origin's side of the edge outer -> inner: cross((I - O), (P - O)) >= 0
    return (ix - outer) * py - iy * (px - outer) >= 0


def extent(shape: str, r: float) -> tuple[float, float, float, float]:
    """(left, right, up, down) reach of a shape from its centre, in pixels."""
    if shape in ("circle", "ring"):
        return r, r, r, r
    if shape == "square":
        return 0.86 * r, 0.86 * r, 0.86 * r, 0.86 * r
    if shape == "triangle":
        return 1.05 * r, 1.05 * r, r, 0.85 * r
    outer = STAR_OUTER * r  # outer points at -90, -18, 54, 126 and 198 degrees
    return outer * math.cos(math.radians(18)), outer * math.cos(math.radians(18)), outer, outer * math.sin(math.radians(54))


def shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """(SIZE, SIZE) bool: the pixels whose centre lies inside the shape. Shapes are axis-aligned and symmetric
    about their vertical axis, so a horizontal flip of a scene is a scene with the same caption."""
    dx, dy = _XX - cx, _YY - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 > (0.52 * r) ** 2)
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.86 * r
    if shape == "triangle":  # apex (0, -r), base corners (+-1.05 r, 0.85 r)
        return (dy <= 0.85 * r) & (1.85 * np.abs(dx) <= 1.05 * (dy + r))
    if shape == "star":
        return _inside_star(dx, dy, r)
    raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")


def render(scene: Scene) -> np.ndarray:
    """The scene as (SIZE, SIZE, 3) float32 RGB in 0..1."""
    img = np.empty((SIZE, SIZE, 3), dtype=np.float32)
    img[:] = scene.background
    if scene.texture == "noise":
        img += np.random.default_rng(scene.texture_seed).normal(0.0, 0.012, (SIZE, SIZE, 1)).astype(np.float32)
    elif scene.texture == "gradient":
        angle = np.random.default_rng(scene.texture_seed).uniform(0, 2 * math.pi)
        ramp = (np.cos(angle) * (_XX - SIZE / 2) + np.sin(angle) * (_YY - SIZE / 2)) / SIZE
        img += (0.08 * ramp)[..., None].astype(np.float32)
    for obj in scene.objects:
        img[shape_mask(obj.shape, obj.cx, obj.cy, obj.r)] = obj.rgb
    return np.clip(img, 0.0, 1.0)


def _caption(rng, objects) -> str:
    """A caption in one of the templates; objects are mentioned in random order (not by position)."""
    def name(o, coloured):
        return f"a {o.colour} {o.shape}" if coloured else f"a {o.shape}"

    if len(objects) == 1:
        return name(objects[0], rng.random() < 0.75)
    a, b = (objects[0], objects[1]) if rng.random() < 0.5 else (objects[1], objects[0])
    kind = rng.choice(5, p=[0.45, 0.2, 0.15, 0.1, 0.1])
    if kind == 0:
        return f"{name(a, True)} and {name(b, True)}"
    if kind == 1:
        return f"{name(a, False)} and {name(b, False)}"
    if kind == 2:
        return f"{name(a, False)} with {name(b, False)}"
    if kind == 3:
        return f"{name(a, False)} and {name(b, True)}"
    return f"{name(a, True)} and {name(b, False)}"


def _place(rng, shape, r, forbidden):
    """A centre for the shape, fully inside the image and clear of `forbidden`, with its mask; or None."""
    left, right, up, down = extent(shape, r)
    for _ in range(50):
        cx = rng.uniform(left, SIZE - right)
        cy = rng.uniform(up, SIZE - down)
        mask = shape_mask(shape, cx, cy, r)
        if mask.any() and not (mask & forbidden).any():
            return cx, cy, mask
    return None


def draw_objects(rng, specs) -> tuple[Obj, ...] | None:
    """Objects for `specs` [(shape, colour)], randomly sized and placed; None when they do not fit."""
    objects, forbidden = [], np.zeros((SIZE, SIZE), dtype=bool)  # forbidden: within GAP pixels of an object
    for shape, colour in specs:
        r = rng.uniform(*RADIUS)
        placed = _place(rng, shape, r, forbidden)
        if placed is None:
            return None
        cx, cy, mask = placed
        rgb = tuple(float(np.clip(c + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER), 0, 1)) for c in COLOURS[colour])
        objects.append(Obj(shape, colour, rgb, cx, cy, r))
        forbidden |= ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=GAP)
    return tuple(objects)


def draw_scene(rng: np.random.Generator, training: bool = True, absent: float = 0.0) -> Scene:
    """One random scene with its caption. training=True: never a held-out composition, and CAPTION_DROP of the
    captions are "" (for classifier-free guidance). absent: the share of two-object scenes whose image keeps only
    one of the objects (drawn at random) while the caption names both, as web captions name objects their images
    do not show; SD learns from them that a named subject may be missing, which is the neglect A&E is for. At 0
    no extra draw is made, so the scenes are those of a world without it."""
    n = 1 if rng.random() < ONE_OBJECT else 2  # drawn once: redrawing it on a rejection would favour one object
    while True:
        specs = [(SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))]) for _ in range(n)]
        objects = draw_objects(rng, specs)
        if objects is not None and not (training and is_held_out(objects)):
            break
    caption = _caption(rng, objects)
    if absent and n == 2 and rng.random() < absent:
        objects = (objects[rng.integers(2)],)
    if training and rng.random() < CAPTION_DROP:
        caption = ""
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    texture = TEXTURES[rng.choice(3, p=[0.5, 0.25, 0.25])]
    return Scene(objects, background, texture, int(rng.integers(2**31)), caption)


POOL_CHUNK = 1000  # scenes per generator stream: chunk k of a pool comes from default_rng([seed, k])


def _pool_chunk(args):
    seed, k, n, absent = args
    rng = np.random.default_rng([seed, k])
    scenes = [draw_scene(rng, absent=absent) for _ in range(n)]
    return np.stack([np.round(render(s) * 255).astype(np.uint8) for s in scenes]), [s.caption for s in scenes]


def draw_pool(n: int, seed: int, workers: int = 1, absent: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """n training scenes from `seed` (with draw_scene's `absent`): images (n, SIZE, SIZE, 3) uint8 and their
    captions. Drawn in chunks of POOL_CHUNK with a stream each, so the pool is the same whatever the number of
    worker processes."""
    jobs = [(seed, k, min(POOL_CHUNK, n - start), absent) for k, start in enumerate(range(0, n, POOL_CHUNK))]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            parts = pool.map(_pool_chunk, jobs)
    else:
        parts = [_pool_chunk(job) for job in jobs]
    if not parts:
        return np.zeros((0, SIZE, SIZE, 3), np.uint8), []
    return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]


def scene_for(prompt: str, rng: np.random.Generator) -> Scene:
    """A scene that a perfect model would draw for `prompt` (colours drawn where the prompt names none): the
    judge's test images, and references for held-out prompts."""
    parsed = parse_prompt(prompt)
    while True:
        specs = [(s.shape, s.colour or list(COLOURS)[rng.integers(len(COLOURS))]) for s in parsed.subjects]
        objects = draw_objects(rng, specs)
        if objects is not None:
            break
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    return Scene(objects, background, texture, int(rng.integers(2**31)), prompt)

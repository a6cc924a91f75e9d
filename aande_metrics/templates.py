"""The prompt ensemble behind every CLIP text feature of the A&E metrics.

A bare prompt such as "a cat and a frog" is a weak CLIP query; CLIP's zero-shot classifier embeds a class name
in 80 ImageNet templates ("a bad photo of a {}.", ...) and averages the normalised features. The official A&E
metrics (metrics/imagenet_utils.py) do the same with the whole prompt, and with each of its halves, so the list
and the way it is filled are data of the metric and must stay exactly those of the official code.
"""
from __future__ import annotations

# metrics/imagenet_utils.py of yuval-alaluf/Attend-and-Excite, in its order (the order does not change the mean,
# but keeping it makes the list checkable against the source).
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)


def fill_templates(text: str) -> list[str]:
    """The 80 texts whose CLIP features are averaged for `text`.

    The paper's prompts start with an article ("a cat and a frog"), so "a photo of a {}" would read "a photo of a a
    cat": the official code removes the doubled article with two plain substring replacements, first "a a" -> "a",
    then "the a" -> "a". They are kept exactly, quirks included: being substring replacements they also act inside
    words ("pizza and" -> "pizzand", "the apple" -> "apple"), and the scores the paper reports were computed so.
    """
    return [t.format(text).replace("a a", "a").replace("the a", "a") for t in IMAGENET_TEMPLATES]

"""A prompt's two halves, for the paper's "minimum object" CLIP score.

Catastrophic neglect drops one subject: the full-prompt similarity hardly notices, the similarity of the
neglected subject's half does. The paper scores each image by the weaker of its two halves. Its prompts have the
forms "a cat and a frog", "a cat with a crown" and "a red car and a blue bowl"; the official script
(metrics/compute_clip_similarity.py) splits on " and " when the prompt has it, else on " with ", and takes the
first two pieces.
"""
from __future__ import annotations


class PromptSplitError(ValueError):
    """The prompt has no two halves the minimum-object score can compare."""


def split_halves(prompt: str) -> tuple[str, str]:
    """(first half, second half) of `prompt`, split as the official script splits it.

    Like the official code: the separator is matched case-sensitively with its spaces, nothing is stripped, and a
    third piece ("a cat and a dog and a frog") is ignored. The official script skips a prompt it cannot split;
    here that is an error, as is an empty half (" and a frog"), since neither has a score to give.
    """
    if " and " in prompt:
        parts = prompt.split(" and ")
    elif " with " in prompt:
        parts = prompt.split(" with ")
    else:
        raise PromptSplitError(
            f"cannot split the prompt {prompt!r} into two halves: the A&E minimum-object score needs ' and ' or "
            f"' with ' between two subjects, e.g. 'a cat and a frog' or 'a cat with a crown'")
    first, second = parts[0], parts[1]
    if not first.strip() or not second.strip():
        raise PromptSplitError(
            f"the prompt {prompt!r} splits into the halves {first!r} and {second!r}; both must name a subject, "
            f"e.g. 'a cat and a frog'")
    return first, second

"""The subject-token selection (ComfyUI type AE_TOKENS) that A&E optimises.

Positions index the text context the UNet sees: ComfyUI encodes prompts in chunks of 77 tokens
(start, 75 tokens, end/padding), so a token in chunk k at position p sits at k * 77 + p.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CHUNK_LEN = 77


@dataclass(frozen=True)
class TokenSelection:
    positions: tuple[int, ...]          # context positions of the selected subject tokens
    tokens: tuple[str, ...] = ()        # token text per position, for captions and errors
    prompt_positions: tuple[int, ...] = ()  # context positions of the prompt's own tokens (no start/end/pad)
    context_len: int = 0                # length of the text context (77 * chunks); 0 = unknown
    family: str = ""                    # tokenizer family: "sd1", "sd2", "sdxl"; "" = unknown
    prompt: str = ""                    # the prompt text the positions refer to
    cond_fingerprint: tuple[float, ...] = field(default=(), compare=False)  # see fingerprint()

    def labels(self) -> list[str]:
        return [f"{t}@{p}" if t else str(p) for t, p in zip(self.tokens or ("",) * len(self.positions), self.positions)]


def parse_indices(text: str) -> tuple[int, ...]:
    """Parse "2,5" or "2 5" into positions; raises ValueError with the fix on bad input."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise ValueError("no subject token given: type indices such as '2,5' or connect 'Select Subject Tokens'")
    try:
        out = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"token indices must be integers such as '2,5', got {text!r}; "
                         "to select by word use the 'Select Subject Tokens' node") from None
    if len(set(out)) != len(out):
        raise ValueError(f"token index given twice in {text!r}")
    return out


def validate_positions(positions, context_len: int, prompt_positions=()) -> None:
    """Refuse positions outside the context or on start/end/padding tokens, naming the fix."""
    if not positions:
        raise ValueError("empty subject selection: choose at least one subject token")
    chunks = context_len // CHUNK_LEN if context_len else 0
    for p in positions:
        if p < 0 or (context_len and p >= context_len):
            raise ValueError(f"token index {p} is outside the text context (0..{context_len - 1}); "
                             "indices count from the start token at 0")
        if chunks and p % CHUNK_LEN == 0:
            raise ValueError(f"token index {p} is a start token; the prompt's first word is at index 1")
        if prompt_positions and p not in prompt_positions:
            raise ValueError(f"token index {p} is an end or padding token, not a word of the prompt; "
                             f"the prompt's tokens are at {format_ranges(prompt_positions)}")


def format_ranges(positions) -> str:
    ps = sorted(positions)
    if not ps:
        return "(none)"
    out, start, prev = [], ps[0], ps[0]
    for p in ps[1:] + [None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(f"{start}" if start == prev else f"{start}..{prev}")
        if p is not None:
            start = prev = p
    return ", ".join(out)

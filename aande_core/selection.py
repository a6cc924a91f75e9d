"""The subject-token selection (ComfyUI type AE_TOKENS) that A&E optimises.

Positions index the text context the UNet sees: ComfyUI encodes prompts in chunks of 77 tokens
(start, 75 tokens, end/padding), so a token in chunk k at position p sits at k * 77 + p.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CHUNK_LEN = 77
COND_KEY = "aande_tokens"  # key of the TokenSelection in each conditioning dict that carries one


@dataclass(frozen=True)
class TokenSelection:
    positions: tuple[int, ...]          # context positions of the selected subject tokens
    tokens: tuple[str, ...] = ()        # token text per position, for captions and errors
    prompt_positions: tuple[int, ...] = ()  # context positions of the prompt's own tokens (no start/end/pad)
    prompt_tokens: tuple[str, ...] = ()     # token text per prompt position
    context_len: int = 0                # length of the text context (77 * chunks); 0 = unknown
    family: str = ""                    # tokenizer family: "sd1", "sd2", "sdxl"; "" = unknown
    prompt: str = ""                    # the prompt text the positions refer to
    cond_fingerprint: tuple[float, ...] = field(default=(), compare=False, repr=False)  # see fingerprint()

    def labels(self) -> list[str]:
        """Captions of the subjects, e.g. "cat@2" (the bare position when the text is unknown)."""
        return self.labels_of(self.positions)

    def labels_of(self, positions) -> list[str]:
        known = dict(zip(self.prompt_positions, self.prompt_tokens))
        known.update(zip(self.positions, self.tokens))
        return [f"{known[p]}@{p}" if known.get(p) else str(p) for p in positions]


def fingerprint(cond: "torch.Tensor") -> tuple[float, ...]:
    """A few numbers of a (1, L, D) text embedding, enough to tell two prompts' embeddings apart."""
    return tuple(float(v) for v in cond[0, :, :4].float().flatten().tolist())


def matches(selection: TokenSelection, cond: "torch.Tensor", rtol: float = 1e-3) -> bool:
    """Whether `cond` is the embedding the selection was made on (True when it carries no fingerprint)."""
    if not selection.cond_fingerprint:
        return True
    fp = fingerprint(cond)
    if len(fp) != len(selection.cond_fingerprint):
        return False
    scale = max(1e-6, max(abs(v) for v in fp))
    return all(abs(a - b) <= rtol * scale for a, b in zip(fp, selection.cond_fingerprint))


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

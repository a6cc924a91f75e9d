"""The subject-token selection that A&E optimises, and the one check of subject indices.

Indices count positions of the text context the UNet sees: ComfyUI encodes prompts in chunks of 77 tokens
(start, 75 tokens, end/padding), so a token in chunk k at position p sits at k * 77 + p. "Select Subject
Tokens" attaches a TokenSelection to the conditioning it outputs (under COND_KEY); that is how the subjects
travel to the samplers, whatever nodes the conditioning passes through.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

CHUNK_LEN = 77
COND_KEY = "aande_tokens"  # key of the TokenSelection in each conditioning dict that carries one


@dataclass(frozen=True)
class TokenSelection:
    token_indices: tuple[int, ...]          # context indices of the selected subject tokens
    tokens: tuple[str, ...] = ()            # token text per subject index, for captions and errors
    prompt_indices: tuple[int, ...] = ()    # context indices of the prompt's own tokens (no start/end/pad)
    prompt_tokens: tuple[str, ...] = ()     # token text per prompt index
    context_len: int = 0                    # length of the text context (77 * chunks)
    family: str = ""                        # tokenizer family: "sd1", "sd2", "sdxl"; "" = unknown
    prompt: str = ""                        # the prompt text the indices refer to

    def labels(self) -> list[str]:
        """Captions of the subjects, e.g. "cat@2" (the bare index when the text is unknown)."""
        return self.labels_of(self.token_indices)

    def labels_of(self, indices) -> list[str]:
        known = dict(zip(self.prompt_indices, self.prompt_tokens))
        known.update(zip(self.token_indices, self.tokens))
        return [f"{known[p]}@{p}" if known.get(p) else str(p) for p in indices]

    def with_indices(self, indices: tuple[int, ...]) -> "TokenSelection":
        """The same prompt layout with other subjects (typed indices override the carried ones)."""
        known = dict(zip(self.prompt_indices, self.prompt_tokens))
        return replace(self, token_indices=tuple(indices), tokens=tuple(known.get(p, "") for p in indices))

    def prompt_listing(self) -> str:
        """"the prompt's tokens are: 1:a 2:cat ...", the tail of every error about subject indices."""
        if not self.prompt_indices:
            return ("this conditioning does not say which indices hold the prompt's words; encode the prompt "
                    "with 'Select Subject Tokens' to see its tokens and their indices")
        return "the prompt's tokens are: " + format_listing(zip(self.prompt_indices, self.prompt_tokens))

    def check(self) -> None:
        """The one check of subject indices; a ValueError names the index, why it cannot be a subject, and
        lists the prompt's tokens with their indices."""
        indices, n = self.token_indices, self.context_len
        if not indices:
            raise ValueError(f"no subject token selected; {self.prompt_listing()}")
        seen = set()
        for p in indices:
            if p in seen:
                raise ValueError(f"token index {p} is selected twice; list each subject once. {self.prompt_listing()}")
            seen.add(p)
            if p < 0 or (n and p >= n):
                raise ValueError(f"token index {p} is outside the text context (0..{n - 1}); {self.prompt_listing()}")
            if p % CHUNK_LEN == 0:
                raise ValueError(f"token index {p} is a start token, not a word of the prompt (indices count from "
                                 f"the start token at 0, so the first word is 1); {self.prompt_listing()}")
            if p % CHUNK_LEN == CHUNK_LEN - 1 or (self.prompt_indices and p not in self.prompt_indices):
                raise ValueError(f"token index {p} is an end or padding token, not a word of the prompt; "
                                 f"{self.prompt_listing()}")


def format_listing(pairs) -> str:
    """"1:a 2:cat 3:and" from (index, text) pairs."""
    return " ".join(f"{p}:{t}" for p, t in pairs) or "(the prompt has no tokens)"


def parse_indices(text: str) -> tuple[int, ...]:
    """Parse "2,5" or "2 5" into indices ("" -> none); raises ValueError with the fix on bad input."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"token indices must be integers such as '2,5', got {text!r}; "
                         "to select by word use the 'Select Subject Tokens' node") from None


def format_ranges(values) -> str:
    """"0..4, 7" for [0, 1, 2, 3, 4, 7]."""
    ps = sorted(values)
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

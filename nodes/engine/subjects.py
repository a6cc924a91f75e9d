"""Which subject tokens a run excites. One way in: the selection that "Select Subject Tokens" attached to the
positive conditioning; typed token_indices override its subjects and keep its prompt layout (captions,
normalize_eot). Whatever the source, the selection is checked by TokenSelection.check().
"""
from __future__ import annotations

from ...aande_core.selection import COND_KEY, TokenSelection


def run_selection(positive_cond: dict, text_embedding, token_indices: tuple[int, ...] = (),
                  legacy: TokenSelection | None = None) -> TokenSelection:
    """The checked selection for a run on `positive_cond` (a processed cond) with its text embedding (B, L, D).

    legacy: a selection from the deprecated `subject_tokens` (AE_TOKENS) input of workflows saved before the
    conditioning carried it; used only when the conditioning carries none.
    """
    context_len = int(text_embedding.shape[1])
    carried = positive_cond.get(COND_KEY)
    if legacy is not None:
        if carried is not None and carried.prompt != legacy.prompt:
            raise ValueError(f"the subject_tokens input (deprecated) was selected on the prompt {legacy.prompt!r}, "
                             f"but the positive conditioning carries a selection on {carried.prompt!r}; disconnect "
                             "subject_tokens: the conditioning of 'Select Subject Tokens' carries the subjects")
        carried = carried or legacy
    if token_indices:
        selection = (carried or TokenSelection((), context_len=context_len)).with_indices(token_indices)
    elif carried is not None:
        selection = carried
    else:
        raise ValueError("no subject tokens: encode the positive prompt with 'Select Subject Tokens' (its "
                         "CONDITIONING carries the subjects), or type token indices such as '2,5' into token_indices")
    if selection.context_len and selection.context_len != context_len:
        raise ValueError(f"the subjects were selected on a {selection.context_len}-token prompt ({selection.prompt!r}) "
                         f"but the positive conditioning has {context_len} tokens (was it combined or concatenated "
                         "with another prompt?); select the subjects on the prompt that reaches the sampler")
    selection.check()
    return selection

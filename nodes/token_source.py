"""Which subject tokens a run excites: an AE_TOKENS input, an index string, or the selection that
"Select Subject Tokens" attached to the positive conditioning; checked against that conditioning."""
from __future__ import annotations

from ..aande_core.selection import COND_KEY, TokenSelection, matches, validate_positions


def resolve_selection(positive_cond: dict, cross_attn, given: TokenSelection | None,
                      indices: tuple[int, ...]) -> TokenSelection:
    context_len = int(cross_attn.shape[1])
    carried = positive_cond.get(COND_KEY)
    if given is not None and indices:
        raise ValueError("subject tokens are given twice (AE_TOKENS input and token_indices); clear token_indices "
                         "or disconnect subject_tokens")
    if given is not None:
        if not matches(given, cross_attn) or (carried is not None and carried.prompt != given.prompt):
            raise ValueError(f"the AE_TOKENS selection was made on the prompt {given.prompt!r}, which is not the "
                             "positive conditioning this sampler runs on; connect the CONDITIONING and AE_TOKENS "
                             "of the same 'Select Subject Tokens' node")
        selection = given
    elif indices:
        # typed indices on a conditioning from 'Select Subject Tokens': keep its prompt layout (normalize_eot,
        # captions); on any other conditioning only the context length is known
        base = carried if carried is not None and matches(carried, cross_attn) else TokenSelection(positions=())
        known = dict(zip(base.prompt_positions, base.prompt_tokens))
        selection = TokenSelection(
            positions=indices, tokens=tuple(known.get(p, "") for p in indices),
            prompt_positions=base.prompt_positions, prompt_tokens=base.prompt_tokens, context_len=context_len,
            family=base.family, prompt=base.prompt)
    elif carried is not None:
        selection = carried
    else:
        raise ValueError("no subject tokens: connect 'Select Subject Tokens' (its CONDITIONING or AE_TOKENS), "
                         "or type token indices such as '2,5' into token_indices")
    if selection.context_len and selection.context_len != context_len:
        raise ValueError(f"the selection was made for a {selection.context_len}-token context but the conditioning "
                         f"has {context_len}; re-run 'Select Subject Tokens' on this prompt")
    validate_positions(selection.positions, context_len, selection.prompt_positions)
    return selection

"""The prompt's own tokens with their context indices, read from a ComfyUI tokenizer's output.

Found with the tokenizer the UNet's conditioning comes from, so prompt weights, escaped parentheses,
embeddings and 77-token chunks shift indices exactly as they shift the conditioning.
"""
from __future__ import annotations

import torch

from ...aande_core.token_match import embedding_piece
from .. import compat


def prompt_tokens(tokenizer, chunks, text: str) -> tuple[list[tuple[int, str]], int]:
    """(context index, vocab string) of the prompt's own tokens, and the context length.

    `chunks` is the tokenizer's tokenize(..., return_word_ids=True) output: word id 0 marks start, end and
    padding (SD2/SDXL-g pad with id 0, which is also "!", so ids alone cannot tell). Embedding vectors are
    tensors; they are named by matching them against the embeddings the text refers to.
    """
    embeds = compat.prompt_embeddings(tokenizer, text)
    out, offset, names = [], 0, {}
    for chunk in chunks:
        for i, (tok, _weight, word_id) in enumerate(chunk):
            if word_id == 0:
                continue
            if isinstance(tok, torch.Tensor):
                if word_id not in names:
                    while embeds and not torch.equal(embeds[0][1][0].to(tok), tok):
                        embeds.pop(0)
                    names[word_id] = [embeds.pop(0)[0] if embeds else f"#{word_id}", 0]
                names[word_id][1] += 1
                out.append((offset + i, embedding_piece(*names[word_id])))
            else:
                out.append((offset + i, compat.vocab_piece(tokenizer, tok)))
        offset += len(chunk)
    return out, offset

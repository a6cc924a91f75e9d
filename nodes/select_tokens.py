"""Node "Select Subject Tokens": CLIPTextEncode plus the A&E subject selection (AE_TOKENS).

The words are found with the connected CLIP's own tokenizer, so prompt weights, escaped parentheses,
embeddings and 77-token chunks shift positions exactly as they shift the conditioning. The rules of what
a subject selects live in aande_core/token_match.py (docs/subject_tokens.md).
"""
from __future__ import annotations

import dataclasses
import logging
import re

import torch

from comfy import sd1_clip

from ..aande_core.selection import COND_KEY, TokenSelection, fingerprint
from ..aande_core.token_match import embedding_piece, format_tokens, select_subjects, token_text

# tokenizer output keys -> family, and the encoder whose tokens give the positions (SDXL: l and g agree)
FAMILIES = {("l",): "sd1", ("h",): "sd2", ("g", "l"): "sdxl"}
POSITION_ENCODER = {"sd1": "l", "sd2": "h", "sdxl": "l"}


def detect_family(tokens: dict) -> str:
    """sd1 / sd2 / sdxl from the encoders clip.tokenize() answered for."""
    family = FAMILIES.get(tuple(sorted(tokens)))
    if family is None:
        raise ValueError(f"Select Subject Tokens needs an SD1.x, SD2.x or SDXL CLIP; this CLIP has the text "
                         f"encoders {sorted(tokens)}. Load the CLIP of an SD1/SD2/SDXL checkpoint")
    return family


def _embeddings_in(sd_tokenizer, text: str) -> list[tuple[str, torch.Tensor]]:
    """The embeddings ComfyUI's tokenizer loads for `text`, in prompt order, as (name, vectors)."""
    if sd_tokenizer.embedding_directory is None:
        return []
    ident = re.escape(sd_tokenizer.embedding_identifier)
    found = []
    for segment, _ in sd1_clip.token_weights(sd1_clip.escape_important(text), 1.0):
        for m in re.finditer(rf"(?:^|(?<=[ \n])){ident}(\S+)", sd1_clip.unescape_important(segment)):
            for name in dict.fromkeys((m.group(1), m.group(1).strip(","))):  # ComfyUI retries without commas
                embed = sd1_clip.load_embed(name, sd_tokenizer.embedding_directory,
                                            sd_tokenizer.embedding_size, sd_tokenizer.embedding_key)
                if embed is not None:
                    found.append((name, embed.reshape(-1, embed.shape[-1])))
                    break
    return found


def prompt_tokens(sd_tokenizer, chunks, text: str) -> tuple[list[tuple[int, str]], int]:
    """(context position, vocab string) of the prompt's own tokens, and the context length.

    `chunks` is one encoder's tokenize(..., return_word_ids=True) output: word id 0 marks start, end and
    padding (SD2/SDXL-g pad with id 0, which is also "!", so ids alone cannot tell). Embedding vectors are
    tensors; they are named by matching them against the embeddings the text refers to.
    """
    embeds = _embeddings_in(sd_tokenizer, text)
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
                out.append((offset + i, sd_tokenizer.inv_vocab[tok]))
        offset += len(chunk)
    return out, offset


class AESelectSubjectTokens:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The CLIP (SD1.x, SD2.x or SDXL) that encodes the prompt; its "
                                             "tokenizer finds the subject tokens."}),
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                    "tooltip": "The prompt, encoded exactly as CLIP Text Encode does (weights "
                                               "like (cat:1.3) and embedding:name work)."}),
                "subjects": ("STRING", {"default": "", "placeholder": "cat, frog   or   2,5",
                                        "tooltip": "The subject tokens A&E strengthens, separated by commas: "
                                                   "words ('cat, frog'; a word selects its first token, "
                                                   "'porcupine[2]' its second, 'cat#2' the second 'cat') or "
                                                   "token indices ('2,5', start token = 0). Click the token "
                                                   "chips under the prompt to fill it."}),
            }
        }

    RETURN_TYPES = ("CONDITIONING", "AE_TOKENS")
    RETURN_NAMES = ("conditioning", "subject_tokens")
    OUTPUT_TOOLTIPS = ("The prompt's conditioning, identical to CLIP Text Encode's, with the subject "
                       "selection attached for the A&E samplers.",
                       "The subject token positions (with the prompt's token layout) for the A&E sampler "
                       "and the attention preview.")
    FUNCTION = "select"
    CATEGORY = "sampling/attend_and_excite"
    DESCRIPTION = ("Encodes a prompt like CLIP Text Encode and selects the subject tokens that "
                   "Attend-and-Excite strengthens, by word or by token index.")

    def select(self, clip, text, subjects):
        if clip is None:
            raise RuntimeError("clip input is invalid: None. If it comes from a checkpoint loader, the "
                               "checkpoint has no text encoder; load a CLIP")
        tokens = clip.tokenize(text)
        family = detect_family(tokens)
        key = POSITION_ENCODER[family]
        sd_tokenizer = getattr(clip.tokenizer, f"clip_{key}")
        prompt, context_len = prompt_tokens(sd_tokenizer, clip.tokenize(text, return_word_ids=True)[key], text)
        found = select_subjects(prompt, subjects, context_len)
        conditioning = clip.encode_from_tokens_scheduled(tokens)
        selection = TokenSelection(
            positions=tuple(m.position for m in found),
            tokens=tuple(m.token for m in found),
            prompt_positions=tuple(pos for pos, _ in prompt),
            prompt_tokens=tuple(token_text(piece) for _, piece in prompt),
            context_len=context_len,
            family=family,
            prompt=text,
            cond_fingerprint=fingerprint(conditioning[0][0]),
        )
        logging.info("Select Subject Tokens (%s): %s; prompt tokens: %s", family,
                     "; ".join(m.describe() for m in found), format_tokens(prompt))
        out = [[cond, {**extra, COND_KEY: dataclasses.replace(selection, cond_fingerprint=fingerprint(cond))}]
               for cond, extra in conditioning]
        return (out, selection)


NODE_CLASS_MAPPINGS = {"AESelectSubjectTokens": AESelectSubjectTokens}
NODE_DISPLAY_NAME_MAPPINGS = {"AESelectSubjectTokens": "Select Subject Tokens"}

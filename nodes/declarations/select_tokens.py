"""Node "Select Subject Tokens": CLIP Text Encode plus the A&E subject selection, carried by the conditioning.

The rules of what a subject selects live in aande_core/token_match.py (docs/subject_tokens.md).
"""
from __future__ import annotations

import logging

from ...aande_core.selection import COND_KEY, TokenSelection
from ...aande_core.token_match import format_tokens, select_subjects, token_text
from .. import compat
from ..prompt.tokens import prompt_tokens


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
    OUTPUT_TOOLTIPS = ("The prompt's conditioning, identical to CLIP Text Encode's, carrying the subject selection "
                       "to any A&E sampler or 'Apply Attend-and-Excite' it reaches.",
                       "Deprecated: the same selection on its own, for workflows saved before the conditioning "
                       "carried it. Leave it unconnected.")
    FUNCTION = "select"
    CATEGORY = "sampling/attend_and_excite"
    DESCRIPTION = ("Encodes a prompt like CLIP Text Encode and selects the subject tokens that "
                   "Attend-and-Excite strengthens, by word or by token index.")

    def select(self, clip, text, subjects):
        if clip is None:
            raise RuntimeError("clip input is invalid: None. If it comes from a checkpoint loader, the "
                               "checkpoint has no text encoder; load a CLIP")
        family, tokenizer, chunks = compat.clip_prompt_tokens(clip, text)
        prompt, context_len = prompt_tokens(tokenizer, chunks, text)
        found = select_subjects(prompt, subjects, context_len)
        selection = TokenSelection(
            token_indices=tuple(m.position for m in found),
            tokens=tuple(m.token for m in found),
            prompt_indices=tuple(pos for pos, _ in prompt),
            prompt_tokens=tuple(token_text(piece) for _, piece in prompt),
            context_len=context_len,
            family=family,
            prompt=text,
        )
        logging.info("Select Subject Tokens (%s): %s; prompt tokens: %s", family,
                     "; ".join(m.describe() for m in found), format_tokens(prompt))
        conditioning = [[cond, {**extra, COND_KEY: selection}] for cond, extra in compat.encode_prompt(clip, text)]
        return (conditioning, selection)


NODE_CLASS_MAPPINGS = {"AESelectSubjectTokens": AESelectSubjectTokens}
NODE_DISPLAY_NAME_MAPPINGS = {"AESelectSubjectTokens": "Select Subject Tokens"}

"""POST /aande/tokenize: the prompt's tokens and positions for the token picker (web/js/token_picker.js).

Uses ComfyUI's bundled tokenizer vocabularies only: no model is loaded and no embedding file is read, so
"embedding:name" shows as plain text here (the node itself resolves embeddings with the loaded CLIP).
"""
from __future__ import annotations

import sys
from functools import lru_cache

from ..aande_core.token_match import select_subjects, split_words, token_text
from .select_tokens import prompt_tokens

ROUTE = "/aande/tokenize"
MAX_TEXT_CHARS = 4000
MAX_SUBJECTS_CHARS = 1000
FAMILIES = ("sd1", "sd2", "sdxl")


@lru_cache(maxsize=None)
def family_tokenizer(family: str):
    """The tokenizer whose positions the node uses for `family` (built once, from the bundled vocab)."""
    from comfy import sd1_clip, sdxl_clip
    from comfy.text_encoders import sd2_clip
    if family == "sd2":
        return sd2_clip.SD2ClipHTokenizer()
    if family == "sdxl":
        return sdxl_clip.SDXLTokenizer().clip_l
    return sd1_clip.SDTokenizer()


def tokenize_request(body) -> dict:
    """Answer for a request body; ValueError (-> HTTP 400) names what is wrong with it."""
    if not isinstance(body, dict):
        raise ValueError('send a JSON object such as {"text": "a cat", "family": "sd1"}')
    text, family, subjects = body.get("text"), body.get("family", "sd1"), body.get("subjects", "")
    if not isinstance(text, str):
        raise ValueError('"text" must be a string')
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f'"text" is {len(text)} characters; the picker tokenizes at most {MAX_TEXT_CHARS}')
    if family not in FAMILIES:
        raise ValueError(f'"family" must be one of {", ".join(FAMILIES)}, got {family!r}')
    if not isinstance(subjects, str) or len(subjects) > MAX_SUBJECTS_CHARS:
        raise ValueError(f'"subjects" must be a string of at most {MAX_SUBJECTS_CHARS} characters')
    tokenizer = family_tokenizer(family)
    tokens, context_len = prompt_tokens(tokenizer, tokenizer.tokenize_with_weights(text, return_word_ids=True), text)
    word_of = {pos: i for i, word in enumerate(split_words(tokens)) for pos, _ in word.tokens}
    answer = {
        "tokens": [{"pos": pos, "text": token_text(piece), "chunk": pos // tokenizer.max_length,
                    "word": word_of[pos]} for pos, piece in tokens],
        "count": len(tokens),
        "context_len": context_len,
        "selected": [],
        "error": None,
    }
    if subjects.strip():
        try:
            answer["selected"] = [{"item": m.item, "pos": m.position, "text": m.token}
                                  for m in select_subjects(tokens, subjects, context_len)]
        except ValueError as e:
            answer["error"] = str(e)
    return answer


async def handle_tokenize(request):
    from aiohttp import web
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the request body is not JSON"}, status=400)
    try:
        return web.json_response(tokenize_request(body))
    except ValueError as e:
        return web.json_response({"error": str(e)}, status=400)


def register() -> None:
    """Add the route to a running ComfyUI server; without one (library use, tests) do nothing."""
    server = sys.modules.get("server")  # ComfyUI's main.py imports it before loading custom nodes
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is not None:
        instance.routes.post(ROUTE)(handle_tokenize)

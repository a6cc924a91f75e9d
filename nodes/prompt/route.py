"""POST /aande/tokenize: the prompt's tokens, their indices and the subject item that selects each (its word form
where one is exact, else its index), for the token picker (web/js/token_picker.js).

Uses ComfyUI's bundled tokenizer vocabularies only: no model is loaded and no embedding file is read, so
"embedding:name" shows as plain text here (the node itself resolves embeddings with the loaded CLIP).
"""
from __future__ import annotations

from functools import lru_cache

from ...aande_core.token_match import select_subjects, split_words, subject_forms, token_text
from .. import compat
from .tokens import prompt_tokens

ROUTE = "/aande/tokenize"
MAX_TEXT_CHARS = 4000
MAX_SUBJECTS_CHARS = 1000
FAMILIES = ("sd1", "sd2", "sdxl")


@lru_cache(maxsize=None)
def family_tokenizer(family: str):
    """The tokenizer whose indices the node uses for `family` (built once, from the bundled vocabulary)."""
    return compat.family_tokenizer(family)


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
    tokens, context_len = prompt_tokens(tokenizer, compat.tokenize_chunks(tokenizer, text), text)
    word_of = {pos: i for i, word in enumerate(split_words(tokens)) for pos, _ in word.tokens}
    chunk = compat.chunk_length(tokenizer)
    answer = {
        "tokens": [{"pos": pos, "text": token_text(piece), "chunk": pos // chunk, "word": word_of[pos],
                    "form": form} for (pos, piece), form in zip(tokens, subject_forms(tokens))],
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


def register() -> bool:
    """Add the route to a running ComfyUI server; without one (library use, tests) do nothing."""
    return compat.add_route("post", ROUTE, handle_tokenize)

"""POST /aande/tokenize (the token picker's route): answers, input checks, and registration on a server."""
import asyncio
import sys
import types

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from transformers import CLIPTokenizer

from harness.host import COMFY_DIR, import_comfy

import_comfy()
from aande_pack.nodes.prompt import route as token_route  # noqa: E402
from aande_pack.nodes.prompt.route import MAX_TEXT_CHARS, ROUTE, family_tokenizer, tokenize_request  # noqa: E402

VOCAB = COMFY_DIR / "comfy" / "sd1_tokenizer"
HF = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"))


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_tokens_carry_position_text_chunk_and_word(family):
    text = " ".join(["a green meadow with tall grass and flowers"] * 10) + " and a porcupine"
    answer = tokenize_request({"text": text, "family": family})
    ids = HF(text)["input_ids"][1:-1]
    assert answer["count"] == len(ids) == 10 * 8 + 2 + 3
    assert [t["pos"] for t in answer["tokens"]] == [(i // 75) * 77 + 1 + i % 75 for i in range(len(ids))]
    assert [t["chunk"] for t in answer["tokens"]] == [i // 75 for i in range(len(ids))]
    assert [t["text"] for t in answer["tokens"]][-3:] == ["por", "cup", "ine"]
    words = [t["word"] for t in answer["tokens"]]
    assert words[-3:] == [words[-4] + 1] * 3  # the pieces of "porcupine" share one word
    assert answer["context_len"] == 154
    assert answer["selected"] == [] and answer["error"] is None


def test_subjects_are_resolved_or_explained():
    answer = tokenize_request({"text": "a cat and a porcupine", "subjects": "porcupine, 2"})
    assert answer["selected"] == [{"item": "porcupine", "pos": 5, "text": "por"}, {"item": "2", "pos": 2, "text": "cat"}]
    answer = tokenize_request({"text": "a cat and a porcupine", "subjects": "dog"})
    assert answer["selected"] == [] and "1:a 2:cat 3:and 4:a 5:por 6:cup 7:ine" in answer["error"]
    assert answer["count"] == 7  # the tokens still come back for the chips


def test_embeddings_are_plain_text_here_and_no_files_are_read():
    assert all(family_tokenizer(f).embedding_directory is None for f in ("sd1", "sd2", "sdxl"))
    answer = tokenize_request({"text": "a embedding:pet cat"})
    plain = [p.removesuffix("</w>") for p in HF.convert_ids_to_tokens(HF("a embedding:pet cat")["input_ids"][1:-1])]
    assert [t["text"] for t in answer["tokens"]] == plain and ":" in plain


@pytest.mark.parametrize("body, message", [
    (["a cat"], "send a JSON object"),
    ({"family": "sd1"}, '"text" must be a string'),
    ({"text": 5}, '"text" must be a string'),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, f"at most {MAX_TEXT_CHARS}"),
    ({"text": "a cat", "family": "flux"}, '"family" must be one of sd1, sd2, sdxl'),
    ({"text": "a cat", "subjects": ["cat"]}, '"subjects" must be a string'),
])
def test_bad_requests_are_refused(body, message):
    with pytest.raises(ValueError, match=message):
        tokenize_request(body)


def fake_comfy_server(monkeypatch):
    routes = web.RouteTableDef()
    server = types.ModuleType("server")
    server.PromptServer = type("PromptServer", (), {"instance": types.SimpleNamespace(routes=routes)})
    monkeypatch.setitem(sys.modules, "server", server)
    return routes


def test_register_is_a_no_op_without_a_server(monkeypatch):
    monkeypatch.delitem(sys.modules, "server", raising=False)
    assert token_route.register() is False  # library use: nothing to register on, nothing raised
    server = types.ModuleType("server")
    server.PromptServer = type("PromptServer", (), {})  # imported, but no instance made yet
    monkeypatch.setitem(sys.modules, "server", server)
    assert token_route.register() is False


def test_registered_route_answers_json_and_400s(monkeypatch):
    routes = fake_comfy_server(monkeypatch)
    assert token_route.register() is True
    assert [(r.method, r.path) for r in routes] == [("POST", ROUTE)]

    async def exchange():
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            ok = await client.post(ROUTE, json={"text": "a cat", "family": "sdxl"})
            bad_json = await client.post(ROUTE, data="{not json", headers={"Content-Type": "application/json"})
            bad_family = await client.post(ROUTE, json={"text": "a cat", "family": "sd3"})
            return ((ok.status, await ok.json()), (bad_json.status, await bad_json.json()),
                    (bad_family.status, await bad_family.json()))

    ok, bad_json, bad_family = asyncio.run(exchange())
    assert ok == (200, {"tokens": [{"pos": 1, "text": "a", "chunk": 0, "word": 0},
                                   {"pos": 2, "text": "cat", "chunk": 0, "word": 1}],
                        "count": 2, "context_len": 77, "selected": [], "error": None})
    assert bad_json == (400, {"error": "the request body is not JSON"})
    assert bad_family[0] == 400 and "sd1, sd2, sdxl" in bad_family[1]["error"]

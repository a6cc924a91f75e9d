"""POST /aande/tokenize (the token picker's route): answers, input checks, and registration on a server."""
import asyncio
import sys
import types
from collections import Counter

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


def word_forms(text):
    """The picker's forms for a prompt of one-token words and one "porcupine", counted here by hand: a word's
    n-th occurrence is "word#n", porcupine's pieces are [1] (left out), [2], [3]."""
    seen, forms = Counter(), []
    for word in text.split():
        seen[word] += 1
        form = word + (f"#{seen[word]}" if seen[word] > 1 else "")
        forms += [form, form + "[2]", form + "[3]"] if word == "porcupine" else [form]
    return forms


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_each_token_carries_the_word_form_that_selects_it(family):
    # the same forms for every family, also in the second 77-token chunk
    text = " ".join(["a green meadow with tall grass and flowers"] * 10) + " and a porcupine"
    answer = tokenize_request({"text": text, "family": family})
    assert [t["form"] for t in answer["tokens"]] == word_forms(text)
    assert [t["form"] for t in answer["tokens"]][-4:] == ["a#11", "porcupine", "porcupine[2]", "porcupine[3]"]
    # what the picker writes on a click is what the route then reports as selecting that token
    forms = ", ".join(t["form"] for t in answer["tokens"])
    assert tokenize_request({"text": text, "family": family, "subjects": forms})["selected"] == \
           [{"item": t["form"], "pos": t["pos"], "text": t["text"]} for t in answer["tokens"]]


def test_punctuation_and_numbers_keep_their_index():
    answer = tokenize_request({"text": "a cat, 2 cats #1 [x] and a cat"})
    assert [(t["text"], t["form"]) for t in answer["tokens"]] == [
        ("a", "a"), ("cat", "cat"), (",", "3"), ("2", "4"), ("cats", "cats"), ("#", "6"), ("1", "7"), ("[", "8"),
        ("x", "x"), ("]", "10"), ("and", "and"), ("a", "a#2"), ("cat", "cat#2")]


def test_the_families_agree_on_weighted_and_escaped_prompts():
    """Weights, escaped parentheses and a group moved whole to the next chunk shift every family alike, so the
    picker's SD1 positions and forms are the SD2 and SDXL node's too."""
    text = "a photo of a cat and a porcupine, \\(cat\\) " + "tall grass, " * 20 + "(a cat next to a frog:1.2)"
    answers = {f: tokenize_request({"text": text, "family": f})["tokens"] for f in ("sd1", "sd2", "sdxl")}
    assert answers["sd1"][-6]["pos"] == 78 and answers["sd1"][-1]["form"] == "frog"  # the group moved to chunk 2
    assert answers["sd2"] == answers["sd1"] and answers["sdxl"] == answers["sd1"]


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
    assert ok == (200, {"tokens": [{"pos": 1, "text": "a", "chunk": 0, "word": 0, "form": "a"},
                                   {"pos": 2, "text": "cat", "chunk": 0, "word": 1, "form": "cat"}],
                        "count": 2, "context_len": 77, "selected": [], "error": None})
    assert bad_json == (400, {"error": "the request body is not JSON"})
    assert bad_family[0] == 400 and "sd1, sd2, sdxl" in bad_family[1]["error"]

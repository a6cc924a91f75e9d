"""The token picker in a real browser: headless Debian chromium on the real ComfyUI server and frontend with the
pack installed. Typing a prompt shows its tokens as chips, clicking chips edits `subjects`, and the queued
prompt runs the node on the server with that selection."""
import json
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

SHOTS = Path(__file__).resolve().parent / "output" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PICKER = "[data-aande-picker]"


def chip(pos, selected=False):
    return f"{PICKER} .aande-chip{'.aande-selected' if selected else ''}[data-pos=\"{pos}\"]"


@pytest.fixture(scope="module")
def page(comfy_server, tmp_path_factory, small_checkpoint):
    # a first visit opens the templates dialog over the canvas; mark the tutorial as done
    request = urllib.request.Request(comfy_server.url + "/settings", method="POST",
                                     data=json.dumps({"Comfy.TutorialCompleted": True}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path="/usr/bin/chromium",
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.goto(comfy_server.url + "/")
        page.wait_for_function("!!(window.app?.graph && window.LiteGraph?.registered_node_types?.AESelectSubjectTokens)",
                               timeout=90_000)
        page.evaluate(f"""() => {{
            app.graph.clear();
            const loader = LiteGraph.createNode("CheckpointLoaderSimple");
            loader.pos = [20, 140];
            app.graph.add(loader);
            loader.widgets.find(w => w.name === "ckpt_name").value = {json.dumps(small_checkpoint.name)};
            const node = LiteGraph.createNode("AESelectSubjectTokens");
            node.pos = [360, 140];
            node.size = [520, 420];
            app.graph.add(node);
            loader.connect(1, node, 0);
            const preview = LiteGraph.createNode("PreviewAny");
            preview.pos = [920, 140];
            app.graph.add(preview);
            node.connect(1, preview, 0);
            window.aandeNode = node;
            app.canvas.setDirty(true, true);
        }}""")
        yield page
        context.close()


def subjects(page):
    return page.evaluate("() => aandeNode.widgets.find(w => w.name === 'subjects').value")


def set_subjects(page, value):
    page.evaluate("""(value) => {
        const w = aandeNode.widgets.find(w => w.name === 'subjects');
        w.value = value;
        w.callback?.(value);
    }""", value)


def chip_texts(page):
    return page.eval_on_selector_all(f"{PICKER} .aande-chip", "els => els.map(e => [e.dataset.pos, e.firstChild.textContent])")


def test_picker_edits_subjects_and_the_queued_prompt_runs_with_them(page, comfy_server):
    typing_shows_chips_and_clicking_toggles_subjects(page)
    chips_follow_the_prompt_and_show_the_nodes_errors(page)
    queued_prompt_carries_the_picked_subjects_and_runs(page, comfy_server)
    reloaded_workflow_keeps_text_subjects_and_chips(page)
    assert not [e for e in page.errors if "token_picker" in e or "aande" in e.lower()]


def typing_shows_chips_and_clicking_toggles_subjects(page):
    prompt = page.locator("textarea.comfy-multiline-input").first
    prompt.click()
    prompt.press_sequentially("a photo of a cat and a porcupine", delay=15)
    page.wait_for_selector(chip(10))
    assert chip_texts(page) == [["1", "a"], ["2", "photo"], ["3", "of"], ["4", "a"], ["5", "cat"], ["6", "and"],
                                ["7", "a"], ["8", "por"], ["9", "cup"], ["10", "ine"]]
    page.screenshot(path=str(SHOTS / "picker-chips.png"))

    page.click(chip(5))
    page.wait_for_selector(chip(5, selected=True))
    assert subjects(page) == "5"
    page.click(chip(2))
    page.wait_for_selector(chip(2, selected=True))
    assert subjects(page) == "5, 2"
    page.click(chip(2))  # a selected chip toggles off
    page.wait_for_selector(chip(2) + ":not(.aande-selected)")
    assert subjects(page) == "5"

    set_subjects(page, "5, porcupine")  # a word subject highlights its first token ...
    page.wait_for_selector(chip(8, selected=True))
    page.click(chip(8))  # ... and clicking that token removes the word
    page.wait_for_selector(chip(8) + ":not(.aande-selected)")
    assert subjects(page) == "5"
    page.screenshot(path=str(SHOTS / "picker-selected.png"))


def chips_follow_the_prompt_and_show_the_nodes_errors(page):
    prompt = page.locator("textarea.comfy-multiline-input").first
    prompt.press_sequentially(", (frog:1.2)", delay=15)
    page.wait_for_selector(chip(12))
    assert chip_texts(page)[-2:] == [["11", ","], ["12", "frog"]]  # the weight syntax adds no tokens
    set_subjects(page, "5, dog")
    note = page.wait_for_selector(f"{PICKER} .aande-note:not(.aande-info)")
    assert "subject 'dog' is not in the prompt" in note.inner_text() and "5:cat" in note.inner_text()
    page.screenshot(path=str(SHOTS / "picker-error.png"))
    set_subjects(page, "5")
    page.wait_for_selector(f"{PICKER} .aande-note:not(.aande-info)", state="detached")


def queued_prompt_carries_the_picked_subjects_and_runs(page, comfy_server):
    text = "a photo of a cat and a porcupine, (frog:1.2)"
    assert page.evaluate("() => aandeNode.widgets.find(w => w.name === 'text').value") == text
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as sent:
        page.evaluate("() => app.queuePrompt(0, 1)")
    request = json.loads(sent.value.request.post_data)
    ours = [n for n in request["prompt"].values() if n["class_type"] == "AESelectSubjectTokens"]
    assert [n["inputs"]["subjects"] for n in ours] == ["5"] and ours[0]["inputs"]["text"] == text
    assert sent.value.status == 200, sent.value.text()
    prompt_id = sent.value.json()["prompt_id"]
    outputs = comfy_server.wait_for(prompt_id, timeout=300)
    queued = comfy_server.get(f"/history/{prompt_id}")[prompt_id]["prompt"][2]
    assert [n["inputs"]["subjects"] for n in queued.values() if n["class_type"] == "AESelectSubjectTokens"] == ["5"]
    shown = "".join(text for out in outputs.values() for text in out.get("text", []))
    assert "token_indices=(5,)" in shown and "tokens=('cat',)" in shown and "family='sd1'" in shown
    page.screenshot(path=str(SHOTS / "picker-queued.png"))


def reloaded_workflow_keeps_text_subjects_and_chips(page):
    saved = page.evaluate("""async () => {
        const data = app.graph.serialize();
        await app.loadGraphData(data);
        window.aandeNode = app.graph.nodes.find(n => n.type === "AESelectSubjectTokens");
        return data.nodes.find(n => n.type === "AESelectSubjectTokens").widgets_values;
    }""")
    assert saved[:2] == ["a photo of a cat and a porcupine, (frog:1.2)", "5"] and not any(saved[2:])
    assert subjects(page) == "5"
    page.wait_for_function(f"document.querySelectorAll('{PICKER}').length === 1")  # the old node's picker is gone
    page.wait_for_selector(chip(5, selected=True))  # the new node's picker rendered from the loaded values

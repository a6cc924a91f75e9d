"""The token picker in a real browser: headless Debian chromium on the real ComfyUI server with the pack installed,
on the frontend ComfyUI pins and on the newest one. Typing a prompt shows its tokens as chips, clicking chips
writes the word form that selects exactly that token into `subjects` (an index where no word form is exact) and
removes whatever item selected it, and the queued prompt runs the node on the server with that selection."""
import json
from pathlib import Path

import pytest

from harness.browser import frontend_version, open_frontend

SHOTS = Path(__file__).resolve().parent / "output" / "browser"
PICKER = "[data-aande-picker]"


def chip(pos, selected=False):
    return f"{PICKER} .aande-chip{'.aande-selected' if selected else ''}[data-pos=\"{pos}\"]"


@pytest.fixture(scope="module")
def page(frontend_server, browser, small_checkpoint):
    page = open_frontend(browser, frontend_server, viewport=(1400, 900))
    page.shots = SHOTS / f"frontend-{frontend_version(page)}"
    page.shots.mkdir(parents=True, exist_ok=True)
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
    page.context.close()


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


def chip_forms(page):
    return page.eval_on_selector_all(f"{PICKER} .aande-chip", "els => els.map(e => e.dataset.form)")


def click(page, pos, then_selected):
    """Click a chip and wait until the picker has redrawn it (selected or not)."""
    page.click(chip(pos))
    page.wait_for_selector(chip(pos, selected=True) if then_selected else chip(pos) + ":not(.aande-selected)")


def test_picker_edits_subjects_and_the_queued_prompt_runs_with_them(page, frontend_server):
    typing_shows_chips_and_clicking_toggles_subjects(page)
    chips_follow_the_prompt_and_show_the_nodes_errors(page)
    queued_prompt_carries_the_picked_subjects_and_runs(page, frontend_server)
    reloaded_workflow_keeps_text_subjects_and_chips(page)
    assert not [e for e in page.errors if "token_picker" in e or "aande" in e.lower()]


def typing_shows_chips_and_clicking_toggles_subjects(page):
    prompt = page.locator("textarea.comfy-multiline-input").first
    prompt.click()
    prompt.press_sequentially("a photo of a cat and a porcupine", delay=15)
    page.wait_for_selector(chip(10))
    assert chip_texts(page) == [["1", "a"], ["2", "photo"], ["3", "of"], ["4", "a"], ["5", "cat"], ["6", "and"],
                                ["7", "a"], ["8", "por"], ["9", "cup"], ["10", "ine"]]
    # the second and third "a", and porcupine's later pieces, by the rules of docs/subject_tokens.md
    assert chip_forms(page) == ["a", "photo", "of", "a#2", "cat", "and", "a#3", "porcupine", "porcupine[2]",
                                "porcupine[3]"]
    page.screenshot(path=str(page.shots / "picker-chips.png"))

    click(page, 5, then_selected=True)
    assert subjects(page) == "cat"
    click(page, 9, then_selected=True)
    assert subjects(page) == "cat, porcupine[2]"
    click(page, 7, then_selected=True)
    assert subjects(page) == "cat, porcupine[2], a#3"
    click(page, 9, then_selected=False)  # a selected chip toggles off
    assert subjects(page) == "cat, a#3"
    click(page, 7, then_selected=False)
    assert subjects(page) == "cat"

    set_subjects(page, "cat, Porcupine, 2")  # typed words and indices highlight their tokens ...
    page.wait_for_selector(chip(8, selected=True))
    click(page, 8, then_selected=False)  # ... and clicking such a token removes the item as typed
    assert subjects(page) == "cat, 2"
    click(page, 2, then_selected=False)
    assert subjects(page) == "cat"
    page.screenshot(path=str(page.shots / "picker-selected.png"))


def chips_follow_the_prompt_and_show_the_nodes_errors(page):
    prompt = page.locator("textarea.comfy-multiline-input").first
    prompt.press_sequentially(", (frog:1.2)", delay=15)
    page.wait_for_selector(chip(12))
    assert chip_texts(page)[-2:] == [["11", ","], ["12", "frog"]]  # the weight syntax adds no tokens
    assert chip_forms(page)[-2:] == ["11", "frog"]  # a comma has no word form: its index
    set_subjects(page, "cat, dog")
    note = page.wait_for_selector(f"{PICKER} .aande-note:not(.aande-info)")
    assert "subject 'dog' is not in the prompt" in note.inner_text() and "5:cat" in note.inner_text()
    page.screenshot(path=str(page.shots / "picker-error.png"))
    set_subjects(page, "cat")
    page.wait_for_selector(f"{PICKER} .aande-note:not(.aande-info)", state="detached")


def queued_prompt_carries_the_picked_subjects_and_runs(page, server):
    text = "a photo of a cat and a porcupine, (frog:1.2)"
    assert page.evaluate("() => aandeNode.widgets.find(w => w.name === 'text').value") == text
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as sent:
        page.evaluate("() => app.queuePrompt(0, 1)")
    request = json.loads(sent.value.request.post_data)
    ours = [n for n in request["prompt"].values() if n["class_type"] == "AESelectSubjectTokens"]
    assert [n["inputs"]["subjects"] for n in ours] == ["cat"] and ours[0]["inputs"]["text"] == text
    assert sent.value.status == 200, sent.value.text()
    prompt_id = sent.value.json()["prompt_id"]
    outputs = server.wait_for(prompt_id, timeout=300)
    queued = server.get(f"/history/{prompt_id}")[prompt_id]["prompt"][2]
    assert [n["inputs"]["subjects"] for n in queued.values() if n["class_type"] == "AESelectSubjectTokens"] == ["cat"]
    shown = "".join(text for out in outputs.values() for text in out.get("text", []))
    assert "token_indices=(5,)" in shown and "tokens=('cat',)" in shown and "family='sd1'" in shown
    page.screenshot(path=str(page.shots / "picker-queued.png"))


def reloaded_workflow_keeps_text_subjects_and_chips(page):
    saved = page.evaluate("""async () => {
        const data = app.graph.serialize();
        await app.loadGraphData(data);
        window.aandeNode = app.graph.nodes.find(n => n.type === "AESelectSubjectTokens");
        return data.nodes.find(n => n.type === "AESelectSubjectTokens").widgets_values;
    }""")
    assert saved[:2] == ["a photo of a cat and a porcupine, (frog:1.2)", "cat"] and not any(saved[2:])
    assert subjects(page) == "cat"
    page.wait_for_function(f"document.querySelectorAll('{PICKER}').length === 1")  # the old node's picker is gone
    page.wait_for_selector(chip(5, selected=True))  # the new node's picker rendered from the loaded values

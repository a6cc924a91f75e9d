"""The scores table in the node: "CLIP Score (A&E paper)" queued from a real browser page (both frontends) on
two images, with the tiny CLIP in the server's models/aande_clip/, shows the table its UI output carries inside
the node (web/js/metric_table.js), and saving the workflow does not store it."""
import pytest

from harness.browser import frontend_version, open_frontend, own_errors
from harness.metric_models import tiny_clip_folder

TABLE = "[data-aande-metric-table]"

BUILD_JS = """() => {
    app.graph.clear();
    const image = LiteGraph.createNode("EmptyImage");
    image.pos = [20, 140];
    app.graph.add(image);
    for (const [name, value] of [["width", 64], ["height", 64], ["batch_size", 2]])
        image.widgets.find(w => w.name === name).value = value;
    const score = LiteGraph.createNode("AEClipScore");
    score.pos = [360, 140];
    app.graph.add(score);
    score.widgets.find(w => w.name === "prompt").value = "a cat and a frog";
    score.widgets.find(w => w.name === "clip_model").value = "tiny-clip";
    image.connect(0, score, 0);
    window.aandeScore = score;
}"""


@pytest.fixture(scope="module")
def page(frontend_server, browser):
    tiny_clip_folder(frontend_server.base_dir / "models" / "aande_clip" / "tiny-clip")
    page = open_frontend(browser, frontend_server)
    yield page
    page.context.close()


def test_the_clip_score_node_shows_its_table_after_running(page, frontend_server):
    page.errors.clear()
    page.evaluate(BUILD_JS)
    assert page.locator(TABLE).count() == 0  # nothing before the node has run
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as sent:
        page.evaluate("() => app.queuePrompt(0, 1)")
    assert sent.value.status == 200, sent.value.text()
    outputs = frontend_server.wait_for(sent.value.json()["prompt_id"], timeout=300)
    [table] = next(iter(outputs.values()))["text"]
    page.wait_for_function(f"() => document.querySelector('{TABLE}')?.textContent.length > 0", timeout=30000)
    shown = page.locator(TABLE).text_content()
    assert shown == table
    assert "'a cat' | 'a frog'" in shown and len(shown.splitlines()) == 1 + 1 + 2 + 1  # title, header, 2, mean
    saved = page.evaluate("async () => (await app.graphToPrompt()).workflow.nodes"
                          ".find(n => n.type === 'AEClipScore').widgets_values")
    assert saved == ["a cat and a frog", "tiny-clip"], frontend_version(page)
    assert own_errors(page, frontend_server) == []

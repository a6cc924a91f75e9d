"""Headless Debian chromium on the real ComfyUI frontend of a ComfyServer, for tests and the example tools.

Each page gets a fresh browser context (no stored profile) and records page errors and console errors in
`page.errors` ("message @ source url"), so a caller can assert that loading or queuing logged none.

The browser tests run on two frontends, the one ComfyUI 0.3.75 pins (1.32.9) and the newest
(harness.server.NEWEST_FRONTEND); what differs between them is handled here, so that a test reads the same for
both: `window.app`, `LiteGraph` and `app.showMissingNodesError` are in both; 1.32.9 reports missing models
through `app.showMissingModelsError` while it loads a workflow, the newest verifies them against the server
after loading and lists them in its `missingModel` store (`missing_models`); and the newest asks the 0.3.75
server for a jobs API it does not serve (`own_errors` leaves those 404s out). Neither opens a dialog over the
canvas once the tutorial is marked as done.
"""
import json
import urllib.request
from contextlib import contextmanager

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# every page states these, so that no page inherits what an earlier one set on the same server: a first visit
# opens the templates dialog over the canvas unless the tutorial is done; nodes are drawn on the canvas
# unless a page asks for the DOM ("Vue") nodes
PAGE_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.VueNodes.Enabled": False}
# the newest frontend polls /api/jobs, which ComfyUI 0.3.75 does not serve: a frontend-server mismatch
UNSERVED_PATHS = ("/api/jobs",)
UNSERVED_MESSAGE = "JobsApiError: Failed to fetch jobs: 404"


def post_settings(server, settings):
    """Store user settings on the server (the frontend reads them at start-up)."""
    request = urllib.request.Request(server.url + "/settings", method="POST", data=json.dumps(settings).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


@contextmanager
def chromium():
    """One headless chromium for several pages."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_frontend(browser, server, locale="en-US", viewport=(1600, 900), settings=None):
    """A page on the server's frontend, ready once `app` has the pack's nodes registered, with PAGE_SETTINGS
    and `settings` stored first."""
    post_settings(server, {**PAGE_SETTINGS, **(settings or {})})
    context = browser.new_context(locale=locale, viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(f"{m.text} @ {m.location.get('url', '')}"))
    page.goto(server.url + "/")
    page.wait_for_function("!!(window.app?.graph && window.LiteGraph?.registered_node_types?.AESelectSubjectTokens)",
                           timeout=90_000)
    return page


def frontend_version(page):
    return page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")


def own_errors(page, server):
    """page.errors less what is not the page's own doing: failed loads from other hosts (the frontend asks
    api.comfy.org and huggingface.co, and test hosts are offline) and the newest frontend's requests to the
    endpoints ComfyUI 0.3.75 does not serve (UNSERVED_PATHS)."""
    def foreign(error):
        source = error.rpartition(" @ ")[2]
        if UNSERVED_MESSAGE in error:
            return True
        return error.startswith("Failed to load resource") and (
            not source.startswith(server.url) or source[len(server.url):].startswith(UNSERVED_PATHS))
    return [e for e in page.errors if not foreign(e)]


LOAD_JS = """async (data) => {
    const missing = [];
    app.showMissingNodesError = (types) => missing.push(...types.map(t => t.type ?? t));
    if (app.showMissingModelsError) {  // 1.32: called while loading, once, with every missing model
        window.aandeMissingModels = [];
        app.showMissingModelsError = (models) => window.aandeMissingModels.push(...models.map(m => m.name));
    }
    await app.loadGraphData(data);
    const unknown = app.graph.nodes.filter(n => !(n.type in LiteGraph.registered_node_types)).map(n => n.type);
    const {output} = await app.graphToPrompt();
    return {missing_nodes: missing, unknown, types: app.graph.nodes.map(n => n.type), output};
}"""

MISSING_MODELS_JS = """() => {
    if (window.aandeMissingModels) return window.aandeMissingModels;
    const store = app.extensionManager._p._s.get("missingModel");  // the newest: its pinia store
    return (store?.missingModelCandidates ?? []).filter(m => m.isMissing).map(m => m.name);
}"""


def load_workflow(page, data):
    """Load a workflow as the templates dialog does; return the node types the frontend reported missing
    (`missing_nodes`), those it has no definition of (`unknown`), the graph's node `types` and the API prompt it
    makes (`output`)."""
    return page.evaluate(LOAD_JS, data)


def missing_models(page, expected, timeout=30_000):
    """The names of the models the frontend reports missing for the graph load_workflow loaded, once they are
    `expected` or after `timeout` ms: the newest frontend checks them with the server after loading."""
    try:
        page.wait_for_function(f"(expected) => JSON.stringify(({MISSING_MODELS_JS})()) === JSON.stringify(expected)",
                               arg=list(expected), timeout=timeout)
    except PlaywrightTimeout:
        pass  # the caller's comparison shows what the frontend reported instead
    return page.evaluate(MISSING_MODELS_JS)

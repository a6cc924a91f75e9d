"""Headless Debian chromium on the real ComfyUI frontend of a ComfyServer, for tests and the example tools.

Each page gets a fresh browser context (no stored profile) and records page errors and console errors in
`page.errors` ("message @ source url"), so a caller can assert that loading or queuing logged none.
"""
import json
import urllib.request
from contextlib import contextmanager

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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


def open_frontend(browser, server, locale="en-US", viewport=(1600, 900)):
    """A page on the server's frontend, ready once `app` has the pack's nodes registered.

    A first visit opens the templates dialog over the canvas, so the tutorial is marked as done first.
    """
    post_settings(server, {"Comfy.TutorialCompleted": True})
    context = browser.new_context(locale=locale, viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(f"{m.text} @ {m.location.get('url', '')}"))
    page.goto(server.url + "/")
    page.wait_for_function("!!(window.app?.graph && window.LiteGraph?.registered_node_types?.AESelectSubjectTokens)",
                           timeout=90_000)
    return page


def own_errors(page, server):
    """page.errors less failed loads from other hosts: the frontend asks api.comfy.org, and test hosts are offline."""
    return [e for e in page.errors
            if not (e.startswith("Failed to load resource") and not e.rpartition(" @ ")[2].startswith(server.url))]

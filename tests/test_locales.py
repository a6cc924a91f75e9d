"""locales/<lang>/nodeDefs.json (ComfyUI's custom-node translations): every node, input and output of the pack,
read from the nodes themselves, has a non-empty translated name and tooltip in Chinese and Korean; the server
serves them at /i18n; and in both frontends the suite runs (the one ComfyUI pins and the newest), vue-i18n
compiles and resolves every string under the keys the frontend looks up (nodeDefs.<class>.display_name,
.inputs.<name>.name/.tooltip, .outputs.<index>.name/.tooltip), and the nodes show the names that frontend gives
them in Chinese and Korean (screenshots under tests/output/locales/).

Frontend 1.32 (ComfyUI 0.3.75) replaces a lazily loaded language's messages after merging the custom nodes'
ones (ComfyUI_frontend issue #6748, fixed by PR #7214: 1.58.1 merges them again after loading a language), so
there the nodes keep their English names, and the string check merges the messages the way the fixed frontend
does before looking them up.
"""
import json
import re
from pathlib import Path

import pytest

from harness.browser import frontend_version, open_frontend, own_errors
from harness.host import import_comfy

import_comfy()
from aande_pack.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

LOCALES = Path(__file__).resolve().parents[1] / "locales"
SHOTS = Path(__file__).resolve().parent / "output" / "locales"
BROWSER_LOCALES = {"zh": "zh-CN", "ko": "ko-KR"}
# whether a frontend shows the pack's translations by itself (the README's "Translations" says the same)
SHOWS_PACK_TRANSLATIONS = {"1.32.9": False, "1.58.1": True}
# a translated sentence has at least one character of its script (names may stay technical: "cfg", "sigma")
SCRIPTS = {"zh": re.compile(r"[\u4e00-\u9fff]"), "ko": re.compile(r"[\uac00-\ud7a3]")}
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def load(lang):
    return json.loads((LOCALES / lang / "nodeDefs.json").read_text(encoding="utf-8"))


def english():
    """{class: (display_name, description, {input: (spec options)}, [(output name, tooltip)])} from the nodes."""
    out = {}
    for key, cls in NODE_CLASS_MAPPINGS.items():
        types = cls.INPUT_TYPES()
        inputs = {name: (spec[1] if len(spec) > 1 else {}) for section in ("required", "optional")
                  for name, spec in types.get(section, {}).items()}
        names = cls.RETURN_NAMES or cls.RETURN_TYPES
        tips = getattr(cls, "OUTPUT_TOOLTIPS", None) or [None] * len(cls.RETURN_TYPES)
        out[key] = (NODE_DISPLAY_NAME_MAPPINGS[key], cls.DESCRIPTION, inputs, list(zip(names, tips)))
    return out


def test_the_locales_are_chinese_and_korean():
    assert sorted(p.name for p in LOCALES.iterdir()) == ["ko", "zh"]
    assert [p.name for p in (LOCALES / "zh").iterdir()] == ["nodeDefs.json"]
    assert [p.name for p in (LOCALES / "ko").iterdir()] == ["nodeDefs.json"]


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_every_node_input_and_output_is_translated(lang):
    defs, script = load(lang), SCRIPTS[lang]
    nodes = english()
    assert set(defs) == set(nodes)

    def translated(text, source, where):
        assert isinstance(text, str) and text.strip(), f"{lang}: {where} is empty"
        assert script.search(text), f"{lang}: {where} is not translated: {text!r}"
        # numbers (defaults, the paper's values, SD versions) must survive the translation
        missing = set(NUMBER.findall(source or "")) - set(NUMBER.findall(text))
        assert not missing, f"{lang}: {where} lacks {sorted(missing)} of the English text"

    for key, (display_name, description, inputs, outputs) in nodes.items():
        entry = defs[key]
        assert isinstance(entry["display_name"], str) and entry["display_name"].strip()
        assert NUMBER.findall(entry["display_name"]) == NUMBER.findall(display_name)
        translated(entry["description"], description, f"{key} description")

        # the frontend adds a "control after generate" widget to an input that asks for one
        has_control = any(o.get("control_after_generate") for o in inputs.values())
        controls = {"control_after_generate"} if has_control else set()
        assert set(inputs) <= set(entry["inputs"]) <= set(inputs) | controls, key
        for name, options in inputs.items():
            item = entry["inputs"][name]
            assert isinstance(item["name"], str) and item["name"].strip(), f"{lang}: {key}.{name} has no name"
            translated(item.get("tooltip"), options["tooltip"], f"{key}.{name} tooltip")
        for name in controls:
            assert entry["inputs"][name]["name"].strip()

        assert set(entry["outputs"]) == {str(i) for i in range(len(outputs))}, key
        for index, (name, tooltip) in enumerate(outputs):
            item = entry["outputs"][str(index)]
            assert isinstance(item["name"], str) and item["name"].strip(), f"{lang}: {key} output {index} has no name"
            translated(item.get("tooltip"), tooltip, f"{key} output {index} tooltip")


def test_the_server_serves_the_translations(comfy_server):
    served = comfy_server.get("/i18n")
    for lang in SCRIPTS:
        assert {k: v for k, v in served[lang]["nodeDefs"].items() if k in NODE_CLASS_MAPPINGS} == load(lang)


RESOLVE_JS = """async ({lang, keys, merge}) => {
    const vue = [...document.querySelectorAll("*")].find(e => e.__vue_app__).__vue_app__;
    const i18n = vue._context.provides[vue.__VUE_I18N_SYMBOL__].global;  // the frontend's i18n.global
    const own = keys.filter(k => i18n.te(k, lang));  // what the frontend resolves by itself
    if (merge) {
        const custom = await (await fetch("/api/i18n")).json();  // what the frontend's getCustomNodesI18n() fetches
        i18n.mergeLocaleMessage(lang, custom[lang]);  // as the fixed frontend does after loading a language
    }
    return {own: own.length, resolved: keys.map(k => [k, i18n.te(k, lang) ? i18n.t(k, {}, {locale: lang}) : null])};
}"""

SHOW_NODES_JS = """(types) => {
    app.graph.clear();
    types.forEach((type, i) => {
        const node = LiteGraph.createNode(type);
        node.pos = [80 + 440 * i, 120];
        app.graph.add(node);
    });
    app.canvas.setDirty(true, true);
}"""


def frontend_shows_translations(page):
    """SHOWS_PACK_TRANSLATIONS for the page's frontend; a frontend not in it is a question the test cannot answer."""
    version = frontend_version(page)
    if version not in SHOWS_PACK_TRANSLATIONS:
        raise KeyError(f"frontend {version}: say in SHOWS_PACK_TRANSLATIONS (and the README's Translations) whether "
                       "it shows the pack's node names translated; the screenshots under tests/output/locales/ tell")
    return SHOWS_PACK_TRANSLATIONS[version]


def expected_strings(lang):
    expected = {}
    for key, entry in load(lang).items():
        expected[f"nodeDefs.{key}.display_name"] = entry["display_name"]
        expected[f"nodeDefs.{key}.description"] = entry["description"]
        for group in ("inputs", "outputs"):
            for name, item in entry[group].items():
                for field, text in item.items():
                    expected[f"nodeDefs.{key}.{group}.{name}.{field}"] = text
    return expected


@pytest.mark.parametrize("lang", sorted(BROWSER_LOCALES))
def test_the_frontend_shows_and_resolves_the_translations(lang, frontend_server, browser):
    """The nodes' titles as the page shows them (as DOM nodes, to read them): translated where the frontend keeps
    the pack's messages, English where it drops them; then every string compiles ('@', '{', '|' would be vue-i18n
    syntax) and resolves unchanged under its key."""
    page = open_frontend(browser, frontend_server, locale=BROWSER_LOCALES[lang], viewport=(1900, 1000),
                         settings={"Comfy.VueNodes.Enabled": True})
    page.errors.clear()
    shows = frontend_shows_translations(page)
    types = list(load(lang))
    page.evaluate(SHOW_NODES_JS, types)
    titles = page.locator('[data-testid="node-title"]')
    titles.nth(len(types) - 1).wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"frontend-{frontend_version(page)}-{lang}.png"))
    translated = load(lang)
    assert titles.all_inner_texts() == [translated[k]["display_name"] if shows else NODE_DISPLAY_NAME_MAPPINGS[k]
                                        for k in types]

    expected = expected_strings(lang)
    answer = page.evaluate(RESOLVE_JS, {"lang": lang, "keys": list(expected), "merge": not shows})
    assert answer["own"] == (len(expected) if shows else 0)
    assert dict(answer["resolved"]) == expected
    assert own_errors(page, frontend_server) == []
    page.context.close()

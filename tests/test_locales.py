"""locales/<lang>/nodeDefs.json (ComfyUI's custom-node translations): every node, input and output of the pack,
read from the nodes themselves, has a non-empty translated name and tooltip in Chinese and Korean; the server
serves them at /i18n; and the frontend's vue-i18n compiles and resolves every string under the keys the
frontend looks up (nodeDefs.<class>.display_name, .inputs.<name>.name/.tooltip, .outputs.<index>.name/.tooltip).

Frontend 1.32 (ComfyUI 0.3.75) replaces a lazily loaded language's messages after merging the custom nodes'
ones (ComfyUI_frontend issue #6748, fixed by PR #7214), so the browser test merges them the way the fixed
frontend does before looking them up.
"""
import json
import re
from pathlib import Path

import pytest

from harness.browser import chromium, open_frontend, own_errors
from harness.host import import_comfy

import_comfy()
from aande_pack.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

LOCALES = Path(__file__).resolve().parents[1] / "locales"
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


RESOLVE_JS = """async ({lang, keys}) => {
    const vue = [...document.querySelectorAll("*")].find(e => e.__vue_app__).__vue_app__;
    const i18n = vue._context.provides[vue.__VUE_I18N_SYMBOL__].global;  // the frontend's i18n.global
    const custom = await (await fetch("/api/i18n")).json();  // what the frontend's getCustomNodesI18n() fetches
    i18n.mergeLocaleMessage(lang, custom[lang]);  // as the frontend does after loading a language (PR #7214)
    i18n.locale.value = lang;
    return keys.map(k => [k, i18n.te(k) ? i18n.t(k) : null]);
}"""


def test_the_frontend_resolves_every_string(comfy_server):
    """vue-i18n compiles each message ('@', '{', '|' would be syntax) and returns it unchanged under its key."""
    with chromium() as browser:
        for lang, locale in (("zh", "zh-CN"), ("ko", "ko-KR")):
            page = open_frontend(browser, comfy_server, locale=locale)
            page.errors.clear()
            expected = {}
            for key, entry in load(lang).items():
                expected[f"nodeDefs.{key}.display_name"] = entry["display_name"]
                expected[f"nodeDefs.{key}.description"] = entry["description"]
                for group in ("inputs", "outputs"):
                    for name, item in entry[group].items():
                        for field, text in item.items():
                            expected[f"nodeDefs.{key}.{group}.{name}.{field}"] = text
            resolved = dict(page.evaluate(RESOLVE_JS, {"lang": lang, "keys": list(expected)}))
            assert resolved == expected
            assert own_errors(page, comfy_server) == []
            page.context.close()

"""Registry metadata, and the rule that only nodes/ may touch ComfyUI: aande_core stays pure torch, aande_metrics
plain torch and transformers."""
import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_meets_the_comfy_registry_rules():
    """The Registry's pyproject rules (docs.comfy.org/registry/specifications): a node id of fewer than 100
    letters, digits, '-', '_' or '.', starting with a letter, no two specials in a row, without "ComfyUI"; a
    three-number semantic version; a GitHub repository URL; a publisher id and a display name; a license file
    that exists. ComfyUI's own reader of this file (comfy_config) must parse it to the same values."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, comfy = meta["project"], meta["tool"]["comfy"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name), name
    assert not re.search(r"[._-]{2}", name) and "comfyui" not in name.lower(), name
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), project["version"]
    assert project["description"].strip()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", project["urls"]["Repository"])
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"]) and comfy["DisplayName"].strip()
    assert (ROOT / project["license"]["file"]).is_file()
    assert project["dependencies"] == []  # everything comes from the ComfyUI install (torch, numpy, ...)

    from harness.host import COMFY_DIR
    sys.path.insert(0, str(COMFY_DIR))
    try:
        from comfy_config.config_parser import extract_node_configuration
    finally:
        sys.path.remove(str(COMFY_DIR))
    parsed = extract_node_configuration(str(ROOT))
    assert (parsed.project.name, parsed.project.version) == (name, project["version"])
    assert parsed.project.urls.repository == project["urls"]["Repository"]
    assert (parsed.tool_comfy.publisher_id, parsed.tool_comfy.display_name) == (comfy["PublisherId"], comfy["DisplayName"])
    assert parsed.tool_comfy.includes == comfy["includes"]


def test_license_is_gpl3_as_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    head = (ROOT / meta["project"]["license"]["file"]).read_text().split("\n", 2)[:2]
    assert "GNU GENERAL PUBLIC LICENSE" in head[0] and "Version 3" in head[1]
    assert "GNU General Public License v3 (GPLv3)" in " ".join(meta["project"]["classifiers"])


def test_included_folders_exist_and_the_example_workflows_parse():
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]["includes"]
    assert [folder for folder in includes if not (ROOT / folder).is_dir()] == []
    examples = sorted((ROOT / "example_workflows").glob("*.json"))
    assert len(examples) >= 4
    for path in examples:
        workflow = json.loads(path.read_text(encoding="utf-8"))  # the frontend's UI format (LiteGraph 0.4)
        assert workflow["version"] == 0.4 and workflow["nodes"] and workflow["links"], path.name


def test_requirements_pull_no_torch():
    names = [re.split(r"[\s<>=~!;\[]", line.strip(), maxsplit=1)[0].lower()
             for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert not [n for n in names if n.startswith("torch")]


def test_core_and_metrics_source_never_mention_a_comfy_import():
    hits = [f"{path.relative_to(ROOT)}:{n}" for folder in ("aande_core", "aande_metrics")
            for path in sorted((ROOT / folder).rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if "import comfy" in line or "from comfy" in line or "folder_paths" in line]
    assert hits == []


@pytest.mark.parametrize("folder, extra", [("aande_core", set()), ("aande_metrics", {"transformers", "PIL"})])
def test_core_and_metrics_use_only_what_comfyui_ships(folder, extra):
    """aande_core: torch, numpy, scipy; aande_metrics also transformers and Pillow (both in a ComfyUI install)."""
    allowed = {"torch", "numpy", "scipy"} | extra | set(sys.stdlib_module_names)
    for path in sorted((ROOT / folder).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_core_imports_without_comfyui():
    """-I: no PYTHONPATH, no user site; ComfyUI is a folder, never installed, so it is not importable."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import aande_core\n"
            "assert 'comfy' not in sys.modules, 'aande_core imported comfy'\n"
            "try:\n    import comfy\nexcept ModuleNotFoundError:\n    print('ok')\n")
    run = subprocess.run([sys.executable, "-I", "-c", code, str(ROOT)], capture_output=True, text=True,
                         cwd="/", timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"

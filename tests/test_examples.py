"""example_workflows/: ComfyUI serves them as the pack's templates, they use the paper's settings, and each one
loads in the real frontend (headless chromium; the one ComfyUI pins and the newest) with every node known,
converts to the API prompt our converter makes, and, queued from the page with the small checkpoint, a latent of
64 to 88 pixels and 4 steps, runs to a successful /history entry.

What the SDXL example's run proves: the small checkpoint is SD1.5, so its graph (wiring and widget values)
runs with that checkpoint swapped in; that the nodes work on an SDXL UNet and CLIP is covered by
test_sampler_integration.py and test_token_node.py with tiny SDXL models. Its SDXL settings (checkpoint name,
1024x1024) are checked here statically.
"""
import io
import json
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from harness.browser import load_workflow, missing_models, open_frontend, own_errors
from harness.metric_models import tiny_blip_folder, tiny_clip_folder
from harness.server import PACK_NAME
from harness.workflow import nodes_of, to_api_prompt

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
NAMES = ["ae_apply_ksampler_sd15", "ae_compare_scores_sd15", "ae_compare_standard_sd15",
         "ae_sampler_custom_advanced_sd15", "ae_txt2img_sd15", "ae_txt2img_sdxl"]
COMPARISONS = ("ae_compare_scores_sd15", "ae_compare_standard_sd15")
PACK_NODES = {"AESelectSubjectTokens", "AEKSampler", "AESampler", "AEApplyAttendAndExcite", "AEAttentionMapPreview",
              "AEClipScore", "AEBlipCaptionScore"}
SMALL = {name: 64 + 8 * i for i, name in enumerate(NAMES)}  # a size each: no run reuses another's cached results

# the paper's settings (Chefer et al. 2023: SD1.4, 512x512, 50 steps, CFG 7.5, here with DDIM) and the A&E
# hyper-parameters of the paper and its official code, written out independently of the nodes' defaults
PAPER_SAMPLING = {"steps": 50, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "ddim_uniform", "denoise": 1.0}
PAPER_AE = {"token_indices": "", "attend_and_excite": True, "max_iter_to_alter": 25, "scale_factor": 20.0,
            "scale_range_start": 1.0, "scale_range_end": 0.5, "thresholds": "0:0.05, 10:0.5, 20:0.8",
            "max_refinement_steps": 20, "smooth_attentions": True, "sigma": 0.5, "kernel_size": 3,
            "attention_res": "auto", "normalize_eot": "auto"}
# what an example may set differently from a pack node's default
CHOSEN = {"AESelectSubjectTokens": {"text": "a cat and a frog", "subjects": "cat, frog"},
          "AEClipScore": {"prompt": "a cat and a frog"}, "AEBlipCaptionScore": {"prompt": "a cat and a frog"}}


def workflow(name):
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


@pytest.fixture(scope="module")
def page(frontend_server, browser):
    # the scores example runs with the tiny metric models in place of CLIP ViT-B/16 and BLIP base
    tiny_clip_folder(frontend_server.base_dir / "models" / "aande_clip" / "tiny-clip")
    tiny_blip_folder(frontend_server.base_dir / "models" / "aande_blip" / "tiny-blip")
    page = open_frontend(browser, frontend_server)
    yield page
    page.context.close()


def test_the_examples_are_the_packs_templates(comfy_server):
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == NAMES
    assert sorted(comfy_server.get("/workflow_templates")[PACK_NAME]) == NAMES
    served = comfy_server.get(f"/api/workflow_templates/{PACK_NAME}/ae_txt2img_sd15.json")
    assert served == workflow("ae_txt2img_sd15")
    for name in NAMES:  # the templates dialog shows <name>.jpg as the card's picture
        with urllib.request.urlopen(f"{comfy_server.url}/api/workflow_templates/{PACK_NAME}/{name}.jpg") as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            assert Image.open(io.BytesIO(r.read())).size == (400, 400)


@pytest.mark.parametrize("name", NAMES)
def test_example_uses_the_papers_settings(name, object_info):
    prompt = to_api_prompt(workflow(name), object_info)
    sdxl = name.endswith("sdxl")
    [ckpt] = nodes_of(prompt, "CheckpointLoaderSimple")
    assert ckpt["inputs"]["ckpt_name"] == ("sd_xl_base_1.0.safetensors" if sdxl else
                                           "v1-5-pruned-emaonly-fp16.safetensors")
    side = 1024 if sdxl else 512
    batch = 4 if name == "ae_compare_scores_sd15" else 1  # the scores example ranks 4 seeds
    assert [n["inputs"] for n in nodes_of(prompt, "EmptyLatentImage")] == [{"width": side, "height": side,
                                                                             "batch_size": batch}]
    assert [n["inputs"]["text"] for n in nodes_of(prompt, "CLIPTextEncode")] == [""]  # the paper: no negative
    [select] = nodes_of(prompt, "AESelectSubjectTokens")
    assert (select["inputs"]["text"], select["inputs"]["subjects"]) == ("a cat and a frog", "cat, frog")

    samplers = nodes_of(prompt, "AEKSampler") + nodes_of(prompt, "AESampler") + \
        nodes_of(prompt, "AEApplyAttendAndExcite")
    expected_switch = [False, True] if name in COMPARISONS else [True]
    assert [n["inputs"]["attend_and_excite"] for n in samplers] == expected_switch
    for n in samplers:
        assert {k: n["inputs"][k] for k in PAPER_AE if k != "attend_and_excite"} == \
               {k: v for k, v in PAPER_AE.items() if k != "attend_and_excite"}
    for n in nodes_of(prompt, "AEKSampler") + nodes_of(prompt, "KSampler"):
        assert {k: n["inputs"][k] for k in PAPER_SAMPLING} == PAPER_SAMPLING
    assert len(nodes_of(prompt, "KSampler")) == (name == "ae_apply_ksampler_sd15")
    scores = 2 if name == "ae_compare_scores_sd15" else 0  # one of each per row
    assert len(nodes_of(prompt, "AEClipScore")) == len(nodes_of(prompt, "AEBlipCaptionScore")) == scores
    for n in nodes_of(prompt, "BasicScheduler"):
        assert n["inputs"]["scheduler"] == "ddim_uniform" and n["inputs"]["steps"] == 50
        assert n["inputs"]["denoise"] == 1.0
    assert [n["inputs"]["sampler_name"] for n in nodes_of(prompt, "KSamplerSelect")] == \
           (["ddim"] if name == "ae_sampler_custom_advanced_sd15" else [])
    assert [n["inputs"]["cfg"] for n in nodes_of(prompt, "CFGGuider")] == \
           ([7.5] if name == "ae_sampler_custom_advanced_sd15" else [])

    # every other widget of the pack's nodes keeps the node's default
    for node in prompt.values():
        kind = node["class_type"]
        if kind not in PACK_NODES:
            continue
        for section in ("required", "optional"):
            for input_name, spec in object_info[kind]["input"].get(section, {}).items():
                value = node["inputs"].get(input_name)
                if len(spec) < 2 or "default" not in spec[1] or isinstance(value, list):
                    continue  # no default (e.g. text) or fed by a link (the shared seed)
                if input_name == "attend_and_excite":
                    continue  # checked above: off in the comparison's standard row
                expected = CHOSEN.get(kind, {}).get(input_name, spec[1]["default"])
                assert value == expected, f"{name}: {kind}.{input_name}"


SWAP_JS = """(swap) => {
    const set = (node, name, value) => { node.widgets.find(w => w.name === name).value = value; };
    for (const node of app.graph.nodes) {
        if (node.type === "CheckpointLoaderSimple") set(node, "ckpt_name", swap.ckpt);
        if (node.type === "EmptyLatentImage") { set(node, "width", swap.side); set(node, "height", swap.side); }
        if (["AEKSampler", "KSampler", "BasicScheduler"].includes(node.type)) set(node, "steps", swap.steps);
        if (node.type === "AEClipScore" || node.type === "AEBlipCaptionScore") set(node, "clip_model", "tiny-clip");
        if (node.type === "AEBlipCaptionScore") set(node, "blip_model", "tiny-blip");
    }
}"""


@pytest.mark.parametrize("name", NAMES)
def test_example_loads_queues_and_runs_from_the_frontend(name, page, frontend_server, small_checkpoint, object_info):
    page.errors.clear()
    served = frontend_server.get(f"/api/workflow_templates/{PACK_NAME}/{name}.json")  # what the templates dialog loads
    loaded = load_workflow(page, served)
    saved = workflow(name)
    assert loaded["missing_nodes"] == [] and loaded["unknown"] == []
    assert sorted(loaded["types"]) == sorted(n["type"] for n in saved["nodes"])
    # the test server has only the small checkpoint: the frontend names the example's model, with its download URL
    models = [m["name"] for n in saved["nodes"] for m in n["properties"].get("models", [])]
    assert missing_models(page, models) == models
    expected = to_api_prompt(saved, object_info)
    assert {k: (n["class_type"], n["inputs"]) for k, n in loaded["output"].items()} == \
           {k: (n["class_type"], n["inputs"]) for k, n in expected.items()}

    page.evaluate(SWAP_JS, {"ckpt": small_checkpoint.name, "side": SMALL[name], "steps": 4})
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as sent:
        page.evaluate("() => app.queuePrompt(0, 1)")
    assert sent.value.status == 200, sent.value.text()
    queued = json.loads(sent.value.request.post_data)["prompt"]
    assert nodes_of(queued, "CheckpointLoaderSimple")[0]["inputs"]["ckpt_name"] == small_checkpoint.name
    outputs = frontend_server.wait_for(sent.value.json()["prompt_id"], timeout=300)
    assert own_errors(page, frontend_server) == []

    saves = sorted((k for k, n in queued.items() if n["class_type"] == "SaveImage"), key=int)
    previews = sorted((k for k, n in queued.items() if n["class_type"] == "AEAttentionMapPreview"), key=int)
    assert saves and len(previews) == len(saves)
    batch = nodes_of(queued, "EmptyLatentImage")[0]["inputs"]["batch_size"]
    images = {}
    for key in saves + previews:
        items = outputs[key]["images"]
        assert len(items) == (batch if key in saves else 1)  # a preview draws the batch as one grid
        assert {item["type"] for item in items} == {"output" if key in saves else "temp"}
        images[key] = Image.open(frontend_server.base_dir / items[0]["type"] / items[0]["subfolder"] /
                                 items[0]["filename"])
    assert all(images[k].size == (SMALL[name], SMALL[name]) for k in saves)
    for key in (k for k, n in queued.items() if n["class_type"] in ("AEClipScore", "AEBlipCaptionScore")):
        [table] = outputs[key]["text"]  # title, header, a line per image, the mean
        assert len(table.splitlines()) == 2 + batch + 1, table
    if name in COMPARISONS:
        # one seed source feeds both rows; A&E changes the latent, so its image differs from the standard one
        samplers = nodes_of(queued, "AEKSampler")
        assert samplers[0]["inputs"]["seed"] == samplers[1]["inputs"]["seed"]
        assert [s["inputs"]["attend_and_excite"] for s in samplers] == [False, True]
        std, ae = (images[k].tobytes() for k in saves)
        assert std != ae

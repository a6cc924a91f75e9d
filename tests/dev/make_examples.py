"""Build example_workflows/*.json in the real frontend, with their thumbnails, and screenshot example (a).

`make_examples.py [--shots-only]`: starts the real ComfyUI with the pack, builds each graph below in headless
chromium through the page's LiteGraph API (nodes keep their defaults, the paper's settings, unless set here),
and writes what the frontend's own save writes: `(await app.graphToPrompt()).workflow`, after a load/save round
trip. Then loads the saved files as a user would and saves docs/images/example_sd15_graph.png (example (a), for
the README) and example_workflows/<name>.jpg (the thumbnails of ComfyUI's templates dialog).
"""
import argparse
import io
import json
import sys
import tempfile
import uuid
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ -> harness
from harness.browser import chromium, open_frontend, post_settings  # noqa: E402
from harness.host import ROOT  # noqa: E402
from harness.server import ComfyServer  # noqa: E402

EXAMPLES = ROOT / "example_workflows"
SHOT = ROOT / "docs" / "images" / "example_sd15_graph.png"

SD15 = {"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
        "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
               "v1-5-pruned-emaonly-fp16.safetensors?download=true"}
SDXL = {"name": "sd_xl_base_1.0.safetensors", "directory": "checkpoints",
        "url": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/"
               "sd_xl_base_1.0.safetensors?download=true"}
PROMPT, SUBJECTS = "a cat and a frog", "cat, frog"


def node(key, kind, pos, size=None, title=None, widgets=None, models=None):
    return {"key": key, "type": kind, "pos": pos, "size": size, "title": title, "widgets": widgets or {},
            "models": models}


def loader(pos, model):
    return node("ckpt", "CheckpointLoaderSimple", pos, size=[320, 100], title="Load Checkpoint",
                widgets={"ckpt_name": model["name"]}, models=[model])


def prompts(x, y):
    return [node("pos", "AESelectSubjectTokens", [x, y], size=[440, 300],
                 widgets={"text": PROMPT, "subjects": SUBJECTS}),
            node("neg", "CLIPTextEncode", [x, y + 340], size=[440, 120],
                 title="Negative prompt (empty, as the paper)", widgets={"text": ""})]


def note(pos, size, text):
    return node("note", "Note", pos, size=size, title="About this workflow", widgets={"text": text})


PROMPT_LINKS = [("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip")]


def txt2img(name, model, side, about):
    """Example (a) and (c): A&E KSampler text-to-image with its attention preview."""
    return {
        "name": name,
        "nodes": [
            loader([40, 80], model),
            note([40, 260], [320, 300], about),
            *prompts(400, 80),
            node("latent", "EmptyLatentImage", [400, 620], widgets={"width": side, "height": side}),
            node("ae", "AEKSampler", [880, 80], size=[330, 620], widgets={"control_after_generate": "fixed"}),
            node("decode", "VAEDecode", [1250, 80]),
            node("save", "SaveImage", [1250, 200], size=[380, 440], widgets={"filename_prefix": "aande/" + name}),
            node("preview", "AEAttentionMapPreview", [1670, 80], size=[520, 560]),
        ],
        "links": [*PROMPT_LINKS, ("ckpt", "MODEL", "ae", "model"), ("pos", "conditioning", "ae", "positive"),
                  ("neg", "CONDITIONING", "ae", "negative"), ("latent", "LATENT", "ae", "latent_image"),
                  ("ae", "LATENT", "decode", "samples"), ("ckpt", "VAE", "decode", "vae"),
                  ("decode", "IMAGE", "save", "images"), ("ae", "attention", "preview", "attention"),
                  ("decode", "IMAGE", "preview", "image")],
        "groups": [],
    }


ABOUT_SD15 = (
    "Attend-and-Excite with the paper's settings: SD1.5 (the paper used SD1.4), 512x512, 50 steps DDIM "
    "(ddim + ddim_uniform), CFG 7.5, no negative prompt, and the A&E KSampler's default A&E inputs.\n\n"
    "Subjects: type the words (\"cat, frog\") or click the token chips under the prompt.\n\n"
    "Attention Map Preview: each subject's attention map over the image, and the A&E loss per step.")
ABOUT_SDXL = (
    "Attend-and-Excite on SDXL at 1024x1024 (replace the checkpoint with your SDXL base model). The A&E "
    "inputs are the paper's defaults; attention_res 'auto' reads SDXL's 32x32 attention maps (latent/4).\n\n"
    "Subjects: type the words (\"cat, frog\") or click the token chips under the prompt.")
ABOUT_COMPARE = (
    "Standard Stable Diffusion and Attend-and-Excite side by side: the same prompt, seed (the Int node feeds "
    "both samplers) and settings; the top sampler has attend_and_excite off, so it samples as a plain KSampler "
    "and only records the attention. Compare the two images and their attention maps.")
ABOUT_CUSTOM = (
    "Attend-and-Excite inside SamplerCustomAdvanced: A&E Sampler wraps the sampler of KSamplerSelect (ddim) "
    "and applies A&E to the CFGGuider's positive conditioning; BasicScheduler gives the paper's 50 "
    "ddim_uniform steps. The preview also takes the decoded image, so it runs after sampling.")


ABOUT_SCORES = (
    "Standard and Attend-and-Excite on the same 4 seeds (the latent's batch), scored with the paper's metrics: "
    "CLIP Score (full prompt and the weaker half) and BLIP Caption Score show a table per image, to rank the "
    "seeds and compare the two rows. Type the prompt into the score nodes too. The metric models go in "
    "models/aande_clip/clip-vit-base-patch16 and models/aande_blip/blip-image-captioning-base (see the README).")


def comparison(name="ae_compare_standard_sd15", about=ABOUT_COMPARE, scores=False):
    """Example (b): the same seed through an A&E KSampler with A&E off and one with A&E on; with `scores`,
    example (f): a batch of 4 seeds per row, each row's images scored by CLIP Score and BLIP Caption Score."""
    rows = {"std": (80, False, "Standard (attend_and_excite off)"), "ae": (800, True, "Attend-and-Excite")}
    nodes = [loader([40, 80], SD15), note([40, 640], [320, 260], about), *prompts(400, 80),
             node("latent", "EmptyLatentImage", [400, 620], widgets={"batch_size": 4} if scores else None),
             node("seed", "PrimitiveInt", [400, 800], title="seed (both samplers)",
                  widgets={"value": 0, "control_after_generate": "fixed"})]
    links = list(PROMPT_LINKS)
    groups = []
    for row, (y, on, title) in rows.items():
        nodes += [node(f"{row}_ae", "AEKSampler", [920, y + 40], size=[330, 620], title=title,
                       widgets={"attend_and_excite": on, "control_after_generate": "fixed"}),
                  node(f"{row}_decode", "VAEDecode", [1290, y + 40]),
                  node(f"{row}_save", "SaveImage", [1290, y + 150], size=[360, 500],
                       widgets={"filename_prefix": f"aande/compare_{row}"}),
                  node(f"{row}_preview", "AEAttentionMapPreview", [1690, y + 40], size=[520, 610])]
        links += [("ckpt", "MODEL", f"{row}_ae", "model"), ("pos", "conditioning", f"{row}_ae", "positive"),
                  ("neg", "CONDITIONING", f"{row}_ae", "negative"), ("latent", "LATENT", f"{row}_ae", "latent_image"),
                  ("seed", "INT", f"{row}_ae", "seed"), ("ckpt", "VAE", f"{row}_decode", "vae"),
                  (f"{row}_ae", "LATENT", f"{row}_decode", "samples"),
                  (f"{row}_decode", "IMAGE", f"{row}_save", "images"),
                  (f"{row}_ae", "attention", f"{row}_preview", "attention"),
                  (f"{row}_decode", "IMAGE", f"{row}_preview", "image")]
        if scores:
            nodes += [node(f"{row}_clip", "AEClipScore", [2250, y + 40], size=[460, 300],
                           widgets={"prompt": PROMPT}),
                      node(f"{row}_blip", "AEBlipCaptionScore", [2250, y + 380], size=[460, 280],
                           widgets={"prompt": PROMPT})]
            links += [(f"{row}_decode", "IMAGE", f"{row}_clip", "images"),
                      (f"{row}_decode", "IMAGE", f"{row}_blip", "images")]
        groups.append({"title": title, "bounding": [900, y - 20, 1840 if scores else 1330, 700]})
    return {"name": name, "nodes": nodes, "links": links, "groups": groups}


def custom_sampler():
    """Example (d): KSamplerSelect -> A&E Sampler -> SamplerCustomAdvanced (CFGGuider, BasicScheduler, RandomNoise)."""
    return {
        "name": "ae_sampler_custom_advanced_sd15",
        "nodes": [
            loader([40, 80], SD15),
            note([40, 260], [320, 300], ABOUT_CUSTOM),
            *prompts(400, 80),
            node("latent", "EmptyLatentImage", [400, 620]),
            node("noise", "RandomNoise", [880, 80], size=[330, 0], widgets={"control_after_generate": "fixed"}),
            node("guider", "CFGGuider", [880, 200], size=[330, 0], widgets={"cfg": 7.5}),
            node("select", "KSamplerSelect", [880, 340], size=[330, 0], widgets={"sampler_name": "ddim"}),
            node("ae", "AESampler", [880, 440], size=[330, 0]),
            node("sigmas", "BasicScheduler", [880, 900], size=[330, 0],
                 widgets={"scheduler": "ddim_uniform", "steps": 50}),
            node("sample", "SamplerCustomAdvanced", [1250, 80], size=[300, 330]),
            node("decode", "VAEDecode", [1590, 80]),
            node("save", "SaveImage", [1590, 190], size=[380, 440],
                 widgets={"filename_prefix": "aande/sampler_custom_advanced"}),
            node("preview", "AEAttentionMapPreview", [2010, 80], size=[520, 560]),
        ],
        "links": [*PROMPT_LINKS, ("ckpt", "MODEL", "guider", "model"), ("pos", "conditioning", "guider", "positive"),
                  ("neg", "CONDITIONING", "guider", "negative"), ("select", "SAMPLER", "ae", "sampler"),
                  ("ckpt", "MODEL", "sigmas", "model"), ("noise", "NOISE", "sample", "noise"),
                  ("guider", "GUIDER", "sample", "guider"), ("ae", "SAMPLER", "sample", "sampler"),
                  ("sigmas", "SIGMAS", "sample", "sigmas"), ("latent", "LATENT", "sample", "latent_image"),
                  ("sample", "output", "decode", "samples"), ("ckpt", "VAE", "decode", "vae"),
                  ("decode", "IMAGE", "save", "images"), ("ae", "attention", "preview", "attention"),
                  ("decode", "IMAGE", "preview", "image")],
        "groups": [],
    }


ABOUT_PATCH = (
    "Attend-and-Excite as a model patch: Apply Attend-and-Excite patches the MODEL, and ComfyUI's own KSampler "
    "samples with it (KSampler (Advanced), SamplerCustomAdvanced or another pack's sampler node work the same "
    "way). The subjects come from Select Subject Tokens through the positive conditioning. The stock KSampler "
    "has the paper's sampling settings: 50 steps, CFG 7.5, ddim + ddim_uniform.")


def model_patch():
    """Example (e): Load Checkpoint -> Apply Attend-and-Excite -> the stock KSampler, with the attention preview."""
    return {
        "name": "ae_apply_ksampler_sd15",
        "nodes": [
            loader([40, 80], SD15),
            note([40, 260], [320, 300], ABOUT_PATCH),
            *prompts(400, 80),
            node("latent", "EmptyLatentImage", [400, 620]),
            node("apply", "AEApplyAttendAndExcite", [880, 80], size=[330, 0]),
            node("sample", "KSampler", [1250, 80], size=[300, 480],
                 widgets={"control_after_generate": "fixed", "steps": 50, "cfg": 7.5, "sampler_name": "ddim",
                          "scheduler": "ddim_uniform"}),
            node("decode", "VAEDecode", [1590, 80]),
            node("save", "SaveImage", [1590, 190], size=[380, 440],
                 widgets={"filename_prefix": "aande/apply_ksampler"}),
            node("preview", "AEAttentionMapPreview", [2010, 80], size=[520, 560]),
        ],
        "links": [*PROMPT_LINKS, ("ckpt", "MODEL", "apply", "model"), ("apply", "MODEL", "sample", "model"),
                  ("pos", "conditioning", "sample", "positive"), ("neg", "CONDITIONING", "sample", "negative"),
                  ("latent", "LATENT", "sample", "latent_image"), ("sample", "LATENT", "decode", "samples"),
                  ("ckpt", "VAE", "decode", "vae"), ("decode", "IMAGE", "save", "images"),
                  ("apply", "attention", "preview", "attention"), ("decode", "IMAGE", "preview", "image")],
        "groups": [],
    }


GRAPHS = [txt2img("ae_txt2img_sd15", SD15, 512, ABOUT_SD15), comparison(),
          txt2img("ae_txt2img_sdxl", SDXL, 1024, ABOUT_SDXL), custom_sampler(), model_patch(),
          comparison("ae_compare_scores_sd15", ABOUT_SCORES, scores=True)]

BUILD_JS = """async (spec) => {
    app.graph.clear();
    const byKey = {};
    const fail = (msg) => { throw new Error(`${spec.name}: ${msg}`); };
    for (const n of spec.nodes) {
        const node = LiteGraph.createNode(n.type);
        if (!node) fail(`unknown node type ${n.type}`);
        app.graph.add(node);
        node.pos = n.pos;
        if (n.title) node.title = n.title;
        for (const [name, value] of Object.entries(n.widgets)) {
            const w = node.widgets?.find(w => w.name === name);
            if (!w) fail(`${n.type} has no widget ${name}`);
            w.value = value;
            w.callback?.(value);
        }
        if (n.models) node.properties.models = n.models;
        const min = node.computeSize();
        node.setSize(n.size ? [Math.max(n.size[0], min[0]), Math.max(n.size[1], min[1])] : min);
        byKey[n.key] = node;
    }
    for (const [from, output, to, input] of spec.links) {
        const a = byKey[from], b = byKey[to];
        const o = a.outputs.findIndex(s => s.name === output), i = b.inputs.findIndex(s => s.name === input);
        if (o < 0 || i < 0) fail(`no slot ${from}.${output} -> ${to}.${input}`);
        if (!a.connect(o, b, i)) fail(`could not link ${from}.${output} -> ${to}.${input}`);
    }
    for (const g of spec.groups) {
        const group = new LGraphGroup(g.title);
        group.pos = [g.bounding[0], g.bounding[1]];
        group.size = [g.bounding[2], g.bounding[3]];
        app.graph.add(group);
    }
    // open at a view that shows the whole graph in a 1600x900 window, right of the side bar and below the tabs
    const x0 = Math.min(...app.graph.nodes.map(n => n.pos[0])), y0 = Math.min(...app.graph.nodes.map(n => n.pos[1]));
    const x1 = Math.max(...app.graph.nodes.map(n => n.pos[0] + n.size[0]));
    const y1 = Math.max(...app.graph.nodes.map(n => n.pos[1] + n.size[1]));
    const scale = Math.floor(100 * Math.min(1, 1510 / (x1 - x0), 750 / (y1 - y0 + 40))) / 100;
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [70 / scale - x0, 170 / scale - y0];
    const first = JSON.parse(JSON.stringify((await app.graphToPrompt()).workflow));
    await app.loadGraphData(first);
    return JSON.stringify((await app.graphToPrompt()).workflow);
}"""


def build(page, spec) -> dict:
    workflow = json.loads(page.evaluate(BUILD_JS, spec))
    workflow["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, spec["name"]))  # stable across re-generation
    return workflow


def show(page, workflow) -> Image.Image:
    """A workflow as a user sees it after loading it, zoomed to fit the page and cropped to the graph (open the
    page with focus_page)."""
    box = page.evaluate("""async (wf) => {
        await app.loadGraphData(wf, true, true, null, {showMissingModelsDialog: false});
        app.canvas.show_info = false;
        const nodes = app.graph.nodes;
        const x0 = Math.min(...nodes.map(n => n.pos[0])), y0 = Math.min(...nodes.map(n => n.pos[1] - 50));
        const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0]));
        const y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
        const scale = Math.min((innerWidth - 20) / (x1 - x0), (innerHeight - 20) / (y1 - y0));
        app.canvas.ds.scale = scale;
        app.canvas.ds.offset = [10 / scale - x0, 10 / scale - y0];
        app.canvas.setDirty(true, true);
        return [0, 0, Math.ceil((x1 - x0) * scale) + 20, Math.ceil((y1 - y0) * scale) + 20];
    }""", workflow)
    page.wait_for_timeout(1500)  # the token picker fetches its chips
    return Image.open(io.BytesIO(page.screenshot())).convert("RGB").crop(box)


def square(image: Image.Image, side: int) -> Image.Image:
    """The image centred on a square of the canvas colour, resized to side x side."""
    edge = max(image.size)
    out = Image.new("RGB", (edge, edge), image.getpixel((0, image.height - 1)))
    out.paste(image, ((edge - image.width) // 2, (edge - image.height) // 2))
    return out.resize((side, side), Image.Resampling.LANCZOS)


def saved(spec) -> dict:
    return json.loads((EXAMPLES / f"{spec['name']}.json").read_text())


def focus_page(browser, server, viewport):
    post_settings(server, {"LiteGraph.Canvas.MinFontSizeForLOD": 0})  # draw text and widgets at any zoom
    page = open_frontend(browser, server, viewport=viewport)
    page.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleFocusMode')")  # hide the menus
    return page


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots-only", action="store_true", help="only retake the screenshot and the thumbnails")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aande-examples-") as base, chromium() as browser:
        server = ComfyServer(base, log_name="make-examples").start()
        try:
            page = open_frontend(browser, server, viewport=(1600, 900))
            if not args.shots_only:
                EXAMPLES.mkdir(exist_ok=True)
                for spec in GRAPHS:
                    path = EXAMPLES / f"{spec['name']}.json"
                    path.write_text(json.dumps(build(page, spec), indent=2, ensure_ascii=False) + "\n")
                    print(path)
            # the README's screenshot of example (a), palette-quantized to stay small
            shot = show(focus_page(browser, server, (1800, 680)), saved(GRAPHS[0]))
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(SHOT, optimize=True)
            print(SHOT)
            # the templates dialog's thumbnails: <name>.jpg beside each <name>.json
            page = focus_page(browser, server, (1000, 1000))
            for spec in GRAPHS:
                thumb = square(show(page, saved(spec)), 400)
                path = EXAMPLES / f"{spec['name']}.jpg"
                thumb.save(path, quality=85, optimize=True)
                print(path)
        finally:
            server.stop()


if __name__ == "__main__":
    main()

"""Workflows saved with the node definitions of release 0.1.0 still load and run with the same result: the four
example workflows, and tests/data/workflow_saved_0.1.0.json, which sets every input of every pack node to a value
other than its default and links the AE_TOKENS output (deprecated since) into both samplers.

tests/data/results_0.1.0/ holds the images those workflows saved when they ran on the pack at commit 1163bee
(0.1.0), with ComfyUI 0.3.75 on the CPU, the small checkpoint, and for the examples the sizes and 4 steps of
test_examples.py. CPUs with other vector units round differently, which moves a few pixels by one level (seen
here with AVX2 against AVX-512); a changed result moves many pixels by much more.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.workflow import nodes_of, to_api_prompt

DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
EXAMPLE_SIDES = {"ae_compare_standard_sd15": 64, "ae_sampler_custom_advanced_sd15": 72, "ae_txt2img_sd15": 80,
                 "ae_txt2img_sdxl": 88}


def prompt_of(name, object_info, checkpoint):
    """The API prompt of a saved workflow; an example runs on the small checkpoint at its small size, 4 steps;
    every attention preview gets a Save Image so its grid is compared too."""
    if name in EXAMPLE_SIDES:
        prompt = to_api_prompt(json.loads((EXAMPLES / f"{name}.json").read_text()), object_info)
        nodes_of(prompt, "CheckpointLoaderSimple")[0]["inputs"]["ckpt_name"] = checkpoint
        for node in nodes_of(prompt, "EmptyLatentImage"):
            node["inputs"].update(width=EXAMPLE_SIDES[name], height=EXAMPLE_SIDES[name])
        for node in nodes_of(prompt, "AEKSampler") + nodes_of(prompt, "BasicScheduler"):
            node["inputs"]["steps"] = 4
    else:
        prompt = to_api_prompt(json.loads((DATA / f"{name}.json").read_text()), object_info)
    saved = {(n["inputs"]["images"][0], n["inputs"]["images"][1]) for n in prompt.values()
             if n["class_type"] == "SaveImage"}
    for key, node in list(prompt.items()):
        if node["class_type"] == "AEAttentionMapPreview" and (key, 0) not in saved:
            prompt[f"{key}0"] = {"class_type": "SaveImage", "inputs": {"images": [key, 0],
                                                                        "filename_prefix": f"preview{key}"}}
    return prompt


@pytest.mark.parametrize("name", ["workflow_saved_0.1.0", *EXAMPLE_SIDES])
def test_a_workflow_saved_with_0_1_0_runs_with_the_same_result(name, comfy_server, small_checkpoint):
    prompt = prompt_of(name, comfy_server.get("/object_info"), small_checkpoint.name)
    outputs = comfy_server.run_prompt(prompt, timeout=600)
    got = {}
    for key, node in prompt.items():
        if node["class_type"] == "SaveImage":
            for i, item in enumerate(outputs[key]["images"]):
                path = comfy_server.base_dir / "output" / item["subfolder"] / item["filename"]
                got[f"{node['inputs']['filename_prefix'].replace('/', '_')}_{i}.png"] = np.asarray(Image.open(path))
    expected = {p.name: np.asarray(Image.open(p)) for p in sorted((DATA / "results_0.1.0" / name).glob("*.png"))}
    assert sorted(got) == sorted(expected)
    for file, pixels in expected.items():
        assert got[file].shape == pixels.shape, file
        diff = np.abs(got[file].astype(int) - pixels.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.01, (file, int(diff.max()), float(diff.mean()))

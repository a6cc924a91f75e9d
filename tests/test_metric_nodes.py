"""The nodes "CLIP Score (A&E paper)" and "BLIP Caption Score (A&E paper)" in ComfyUI: their model folders in
folder_paths, the per-image outputs (against the library called directly), the table shown in the node, the
progress bar over the batch, the declarations and the errors."""
import pytest
import torch

from aande_pack.aande_metrics.blip_caption import BlipCaptioner
from aande_pack.aande_metrics.clip_similarity import ClipScorer
from aande_pack.nodes.declarations import blip_caption, clip_score, metric_models
from harness.metric_models import tiny_blip_folder, tiny_clip_folder

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder with a tiny CLIP and a tiny BLIP, as they would sit in ComfyUI's models/."""
    root = tmp_path_factory.mktemp("models")
    tiny_clip_folder(root / "clip_models" / "tiny-clip")
    tiny_blip_folder(root / "blip_models" / "tiny-blip")
    return root


@pytest.fixture
def registered(models, monkeypatch):
    """The tiny models' folders as the only paths of the nodes' folder keys (the nodes' loaders start empty)."""
    import folder_paths
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "aande_clip", ([str(models / "clip_models")], set()))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "aande_blip", ([str(models / "blip_models")], set()))
    metric_models._clip.cache_clear()
    metric_models._blip.cache_clear()
    yield models
    metric_models._clip.cache_clear()
    metric_models._blip.cache_clear()


@pytest.fixture
def progress():
    import comfy.utils
    events = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append((value, total)))
    yield events
    comfy.utils.set_progress_bar_global_hook(None)


def images(count):
    return torch.rand(count, 48, 64, 3, generator=torch.Generator().manual_seed(count))


def test_model_folders_are_registered_under_comfyuis_models():
    import folder_paths
    for key in ("aande_clip", "aande_blip"):
        assert f"{folder_paths.models_dir}/{key}".replace("\\", "/") in \
            [p.replace("\\", "/") for p in folder_paths.get_folder_paths(key)]


def test_model_inputs_list_the_folders_found(registered):
    extra = [registered / "clip_models" / name for name in ("another", ".cache")]
    for folder in extra:
        folder.mkdir()
    (registered / "clip_models" / "notes.txt").write_text("a file, not a model folder")
    try:
        clip_inputs = clip_score.AEClipScore.INPUT_TYPES()["required"]
        blip_inputs = blip_caption.AEBlipCaptionScore.INPUT_TYPES()["required"]
    finally:
        for folder in extra:
            folder.rmdir()
        (registered / "clip_models" / "notes.txt").unlink()
    assert clip_inputs["clip_model"][0] == ["another", "tiny-clip"]
    assert blip_inputs["clip_model"][0] == ["another", "tiny-clip"] and blip_inputs["blip_model"][0] == ["tiny-blip"]


def test_without_model_folders_the_inputs_offer_the_readme_names(tmp_path, monkeypatch):
    import folder_paths
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "aande_clip", ([str(tmp_path / "missing")], set()))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "aande_blip", ([str(tmp_path)], set()))
    inputs = blip_caption.AEBlipCaptionScore.INPUT_TYPES()["required"]
    assert inputs["clip_model"][0] == ["clip-vit-base-patch16"]
    assert inputs["blip_model"][0] == ["blip-image-captioning-base"]


def test_clip_score_node_outputs_shows_and_progresses(registered, progress):
    batch = images(3)
    out = clip_score.AEClipScore().score(batch, "a cat and a frog", "tiny-clip")
    full, min_half, table = out["result"]
    want = ClipScorer.from_folder(registered / "clip_models" / "tiny-clip").score(batch, "a cat and a frog")
    assert full == pytest.approx([w["clip_full"] for w in want], abs=1e-5)
    assert min_half == pytest.approx([w["clip_min_half"] for w in want], abs=1e-5)
    assert out["ui"] == {"text": [table]}
    lines = table.splitlines()
    assert "'a cat' | 'a frog'" in lines[0] and len(lines) == 1 + 1 + 3 + 1   # title, header, 3 images, mean
    for line, w in zip(lines[2:5], want):
        assert line.split() == [line.split()[0]] + [f"{w[k]:.4f}" for k in
                                                   ("clip_full", "clip_first_half", "clip_second_half",
                                                    "clip_min_half")]
    assert lines[5].split()[1] == f"{sum(full) / 3:.4f}" and lines[5].split()[4] == f"{sum(min_half) / 3:.4f}"
    assert progress == [(1, 3), (2, 3), (3, 3)]


def test_blip_caption_node_outputs_shows_and_progresses(registered, progress):
    batch = images(2)
    out = blip_caption.AEBlipCaptionScore().score(batch, "a cat and a frog", "tiny-blip", "tiny-clip")
    captions, similarity = out["result"]
    want = [BlipCaptioner.from_folder(registered / "blip_models" / "tiny-blip").caption(image)[0]
            for image in batch.split(1)]
    assert captions == want
    scorer = ClipScorer.from_folder(registered / "clip_models" / "tiny-clip")
    assert similarity == pytest.approx(scorer.caption_similarity(want, "a cat and a frog"), abs=1e-5)
    (table,) = out["ui"]["text"]
    rows = table.splitlines()[2:]
    assert [row.split(None, 2) for row in rows[:2]] == [[f"#{i}", f"{s:.4f}", c]
                                                        for i, (s, c) in enumerate(zip(similarity, captions))]
    assert rows[2].split() == ["mean", f"{sum(similarity) / 2:.4f}"]
    assert progress == [(1, 2), (2, 2)]


def test_the_nodes_reuse_the_loaded_models(registered, monkeypatch):
    loads = []
    original = ClipScorer.from_folder.__func__
    monkeypatch.setattr(ClipScorer, "from_folder", classmethod(lambda cls, *a, **k: loads.append(a) or
                                                                original(cls, *a, **k)))
    clip_score.AEClipScore().score(images(1), "a cat and a frog", "tiny-clip")
    blip_caption.AEBlipCaptionScore().score(images(1), "a cat and a frog", "tiny-blip", "tiny-clip")
    assert len(loads) == 1


def test_a_missing_model_folder_names_the_folder_and_the_download(registered):
    with pytest.raises(ValueError) as e:
        clip_score.AEClipScore().score(images(1), "a cat and a frog", "clip-vit-base-patch16")
    folder = str(registered / "clip_models" / "clip-vit-base-patch16")
    assert folder in str(e.value) and "hf download openai/clip-vit-base-patch16" in str(e.value)
    with pytest.raises(ValueError) as e:
        blip_caption.AEBlipCaptionScore().score(images(1), "a cat", "blip-image-captioning-base", "tiny-clip")
    assert str(registered / "blip_models" / "blip-image-captioning-base") in str(e.value)
    assert "Salesforce/blip-image-captioning-base" in str(e.value)


def test_bad_prompts_fail_before_the_batch_is_processed(registered, progress):
    with pytest.raises(ValueError, match="cannot split"):
        clip_score.AEClipScore().score(images(2), "a lonely cat", "tiny-clip")
    with pytest.raises(ValueError, match="prompt is empty"):
        blip_caption.AEBlipCaptionScore().score(images(2), "", "tiny-blip", "tiny-clip")
    assert progress == []


@pytest.mark.parametrize("module,key,name", [(clip_score, "AEClipScore", "CLIP Score (A&E paper)"),
                                             (blip_caption, "AEBlipCaptionScore", "BLIP Caption Score (A&E paper)")])
def test_node_declarations(module, key, name, registered):
    from aande_pack.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    cls = module.NODE_CLASS_MAPPINGS[key]
    assert NODE_CLASS_MAPPINGS[key] is cls and NODE_DISPLAY_NAME_MAPPINGS[key] == name
    assert cls.CATEGORY == "sampling/attend_and_excite/evaluation" and cls.OUTPUT_NODE and cls.DESCRIPTION
    inputs = cls.INPUT_TYPES()["required"]
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    assert inputs["images"][0] == "IMAGE" and inputs["prompt"][1]["multiline"]
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_IS_LIST) == len(cls.OUTPUT_TOOLTIPS)
    assert all(cls.OUTPUT_TOOLTIPS)

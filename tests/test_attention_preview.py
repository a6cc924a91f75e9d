"""Attention Map Preview: heatmap placement, grid layout, captions, step selection, errors, and the node."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aande_pack.aande_core.heatmap import (STEP_GIVEN, STEP_LAST, STEP_MEAN, TOKENS_PROMPT, TOKENS_SUBJECTS,
                                           colormap, select_maps)
from aande_pack.aande_core.record import AttentionRecord, StepRecord
from aande_pack.nodes.preview.render import BACKGROUND, render_preview

OUTPUT = Path(__file__).resolve().parent / "output"


def peak_map(h, w, peak, value=0.5, floor=0.01):
    m = torch.full((h, w), floor)
    m[peak] = value
    return m


def make_record(subject_maps, token_maps=None, attend_and_excite=True, refinement=None, total_steps=10,
                subject_labels=None):
    """subject_maps: list over steps of (B, S, h, w); loss per step = 1 - peak of the first subject."""
    steps = []
    for i, sm in enumerate(subject_maps):
        tm = sm if token_maps is None else token_maps[i]
        loss = 1.0 - sm[:, 0].flatten(1).amax(1)
        refined = tuple(tuple(r) for r in (refinement or {}).get(i, [()] * sm.shape[0]))
        steps.append(StepRecord(step=i, sigma=10.0 - i, token_maps=tm, subject_maps=sm, loss=loss,
                                refinement_losses=refined))
    S, T = subject_maps[0].shape[1], steps[0].token_maps.shape[1]
    return AttentionRecord(subject_labels=tuple(subject_labels or (f"subj@{i + 1}" for i in range(S))),
                           token_indices=tuple(range(1, S + 1)), prompt_labels=tuple(f"tok@{i + 1}" for i in range(T)),
                           prompt_indices=tuple(range(1, T + 1)), attend_and_excite=attend_and_excite,
                           total_steps=total_steps, steps=tuple(steps))


# Independent inverse of the colormap: nearest colour in a fine lookup table -> value.
LUT = colormap(np.linspace(0.0, 1.0, 1001))


def heat_values(tile_uint8):
    rgb = tile_uint8.reshape(-1, 3).astype(np.float32) / 255.0
    d = ((rgb[:, None, :] - LUT[None]) ** 2).sum(-1)
    return (d.argmin(1) / 1000.0).reshape(tile_uint8.shape[:2])


def test_colormap_is_invertible_and_runs_cold_to_hot():
    v = np.linspace(0, 1, 101)
    img = (colormap(v)[None] * 255 + 0.5).astype(np.uint8)
    assert np.abs(heat_values(img)[0] - v).max() <= 0.02
    lo, hi = colormap(np.array([0.0, 1.0]))
    assert lo[2] > lo[0] and hi[0] > hi[2]  # blue-ish cold end, red-ish hot end


@pytest.mark.parametrize("map_hw,img_hw,peak", [((4, 4), (64, 64), (2, 1)),
                                                ((4, 6), (64, 96), (1, 4)),
                                                ((6, 4), (96, 64), (4, 1))])
def test_hottest_pixel_lands_on_map_peak(map_hw, img_hw, peak):
    h, w = map_hw
    other = (h - 1 - peak[0], w - 1 - peak[1])
    sm = torch.stack([peak_map(h, w, peak), peak_map(h, w, other, value=0.3)])[None]
    rec = make_record([sm])
    image = np.random.default_rng(0).random((1, *img_hw, 3)).astype(np.float32)
    grid, layout = render_preview(rec, select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS), image, 1.0, False)
    H, W = img_hw
    assert layout.tile_hw == (H, W)
    cell = H / h
    for (x, y), (py, px) in zip(layout.tiles[0], [peak, other]):
        values = heat_values(grid[y:y + H, x:x + W])
        hy, hx = np.unravel_index(values.argmax(), values.shape)
        assert abs(hy - (py + 0.5) * cell) <= cell and abs(hx - (px + 0.5) * cell) <= cell
        assert values.max() > 0.95  # scaled to its own peak


def test_overlay_blends_with_opacity():
    sm = peak_map(2, 2, (0, 0))[None, None]
    rec = make_record([sm])
    image = np.full((1, 32, 32, 3), 0.8, np.float32)
    grid, layout = render_preview(rec, select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS), image, 0.25, False)
    x, y = layout.tiles[0][0]
    got = grid[y + 31, x + 31].astype(np.float32) / 255  # far corner: map value 0.01 / 0.5
    want = 0.75 * 0.8 + 0.25 * colormap(np.array(0.02))
    assert np.abs(got - want).max() <= 2 / 255


def test_grid_grows_with_tokens_batch_and_plot():
    def size(B, S, plot):
        sm = torch.rand(B, S, 8, 12)
        rec = make_record([sm, sm])
        grid, layout = render_preview(rec, select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS), None, 0.6, plot)
        return grid.shape[:2], layout

    (h1, w1), lay = size(1, 1, False)
    assert lay.tile_hw == (256, 384)  # no image: 256 px on the short side, the map's aspect
    (h2, w2), _ = size(1, 2, False)
    (h3, w3), _ = size(2, 2, False)
    (h4, w4), _ = size(3, 2, False)
    (h5, w5), lay5 = size(3, 2, True)
    assert h2 == h1 and 384 <= w2 - w1 <= 384 + 16       # one more token: one tile (plus a gap) wider
    assert w4 == w3 == w2 and h4 - h3 == h3 - h2 >= 256   # one more sample: one row (tile + caption) taller
    assert w5 - w4 == w2 - w1 and h5 == h4                # the loss plot: one more tile per row
    assert len(lay5.tiles) == 3 and all(len(r) == 2 for r in lay5.tiles) and len(lay5.plots) == 3


def test_all_prompt_tokens_give_one_tile_each():
    sm = torch.rand(1, 1, 4, 4)
    tm = torch.rand(1, 5, 4, 4)
    rec = make_record([sm], token_maps=[tm])
    sel = select_maps(rec, STEP_LAST, 0, TOKENS_PROMPT)
    assert sel.labels == [f"tok@{i}" for i in range(1, 6)] and torch.equal(sel.maps, tm)
    _, layout = render_preview(rec, sel, None, 0.6, False)
    assert len(layout.tiles[0]) == 5


def caption_band(grid, layout, x, y):
    H, W = layout.tile_hw
    return grid[y + H: y + H + layout.caption_h, x: x + W]


def test_captions_and_header_are_drawn():
    sm = torch.rand(2, 2, 4, 4)
    rec = make_record([sm])
    grid, layout = render_preview(rec, select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS), None, 0.6, True)
    bg = np.array(BACKGROUND)
    for row in layout.tiles:
        for x, y in row:
            assert (np.abs(caption_band(grid, layout, x, y).astype(int) - bg).sum(-1) > 100).sum() > 30
    for x, y in layout.plots:
        assert (np.abs(caption_band(grid, layout, x, y).astype(int) - bg).sum(-1) > 100).sum() > 30
    header = grid[:layout.header_h]
    assert (np.abs(header.astype(int) - bg).sum(-1) > 100).sum() > 30
    x, y = layout.tiles[0][0]
    assert (caption_band(grid, layout, x, y).min(-1) > 200).any()  # light text, not heatmap colours


def test_standard_and_ae_records_get_different_headers():
    sm = torch.rand(1, 1, 4, 4)
    ae, _ = render_preview(make_record([sm]), select_maps(make_record([sm]), STEP_LAST, 0, TOKENS_SUBJECTS),
                           None, 0.6, False)
    std_rec = make_record([sm], attend_and_excite=False)
    std, layout = render_preview(std_rec, select_maps(std_rec, STEP_LAST, 0, TOKENS_SUBJECTS), None, 0.6, False)
    assert ae.shape == std.shape
    assert not np.array_equal(ae[:layout.header_h], std[:layout.header_h])
    assert np.array_equal(ae[layout.header_h:], std[layout.header_h:])


def test_loss_plot_marks_refinement_at_its_step():
    steps = [torch.rand(1, 1, 4, 4) for _ in range(5)]
    rec = make_record(steps, refinement={3: [[0.9, 0.7, 0.6]]}, total_steps=5)
    grid, layout = render_preview(rec, select_maps(rec, STEP_MEAN, 0, TOKENS_SUBJECTS), None, 0.6, True)
    (x, y), (H, W) = layout.plots[0], layout.tile_hw
    plot = grid[y:y + H, x:x + W].astype(int)
    orange = (np.abs(plot - np.array([255, 150, 40])).sum(-1) < 30)
    cols = np.nonzero(orange.any(0))[0]
    assert cols.size > 0
    # x axis spans steps 0..4 between 8 px margins: step 3 sits at 8 + (W - 16) * 3 / 4
    assert abs(cols.mean() - (8 + (W - 16) * 3 / 4)) <= 4
    cyan = (np.abs(plot - np.array([80, 200, 255])).sum(-1) < 30)
    assert cyan.any(0).sum() > (W - 16) * 0.8  # the loss polyline runs across the whole step range


def test_step_selection_last_mean_given():
    per_step = [torch.full((2, 2, 3, 3), float(i + 1)) for i in range(4)]
    for i, m in enumerate(per_step):
        m[:, :, i % 3, 0] = 10.0 * (i + 1)
    rec = make_record(per_step)
    rec = replace(rec, steps=rec.steps[2:] + rec.steps[:2])  # stored out of order: selection follows sampler steps
    last = select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS)
    assert torch.equal(last.maps, per_step[3]) and last.steps == [3]
    given = select_maps(rec, STEP_GIVEN, 1, TOKENS_SUBJECTS)
    assert torch.equal(given.maps, per_step[1]) and given.steps == [1]
    mean = select_maps(rec, STEP_MEAN, 0, TOKENS_SUBJECTS)
    assert torch.allclose(mean.maps, sum(per_step) / 4) and mean.steps == [0, 1, 2, 3]
    assert "0..3" in mean.description and "last A&E step" in last.description


def test_empty_record_says_what_to_connect():
    rec = replace(make_record([torch.rand(1, 1, 4, 4)]), steps=())
    with pytest.raises(ValueError, match="no steps.*'image' input to the VAE Decode"):
        select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS)


def test_bad_step_index_names_recorded_steps():
    rec = make_record([torch.rand(1, 1, 4, 4) for _ in range(3)])
    with pytest.raises(ValueError, match=r"step 7 is not in the attention record; recorded steps: 0\.\.2"):
        select_maps(rec, STEP_GIVEN, 7, TOKENS_SUBJECTS)


def test_batch_mismatch_is_refused():
    rec = make_record([torch.rand(2, 1, 4, 4)])
    sel = select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS)
    with pytest.raises(ValueError, match="image batch has 3 images but the attention record has 2"):
        render_preview(rec, sel, np.zeros((3, 32, 32, 3), np.float32), 0.6, False)


def test_transposed_image_is_refused():
    rec = make_record([torch.rand(1, 1, 4, 6)])
    sel = select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS)
    with pytest.raises(ValueError, match="aspects differ"):
        render_preview(rec, sel, np.zeros((1, 96, 64, 3), np.float32), 0.6, False)


def test_sample_png_two_tokens_on_gradient():
    """Writes tests/output/preview_sample.png for a person to look at."""
    h, w = 8, 12
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    blob = lambda cy, cx: torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    maps = [torch.stack([blob(2, 3) * (0.3 + 0.1 * s), blob(5, 9) * (0.5 - 0.05 * s)])[None].repeat(2, 1, 1, 1)
            for s in range(6)]
    rec = make_record(maps, refinement={0: [[0.75, 0.7], [0.6]], 2: [[0.65, 0.62, 0.6], [0.58]]}, total_steps=20,
                      subject_labels=("cat@2", "dog@5"))
    H, W = 256, 384
    gy, gx = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    image = np.stack([gx, gy, 1 - gx], -1)[None].repeat(2, 0).astype(np.float32)
    grid, layout = render_preview(rec, select_maps(rec, STEP_LAST, 0, TOKENS_SUBJECTS), image, 0.6, True)
    OUTPUT.mkdir(exist_ok=True)
    Image.fromarray(grid).save(OUTPUT / "preview_sample.png")
    assert len(layout.tiles) == 2 and len(layout.plots) == 2 and layout.tile_hw == (H, W)


# --- the ComfyUI node -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_module():
    from harness.host import import_comfy
    import_comfy()
    import aande_pack.nodes.declarations.attention_preview as mod
    return mod


def test_node_returns_image_and_temp_preview(node_module, tmp_path):
    import folder_paths
    old = folder_paths.get_temp_directory()
    folder_paths.set_temp_directory(str(tmp_path))
    try:
        rec = make_record([torch.rand(2, 2, 4, 6) for _ in range(3)])
        image = torch.rand(2, 64, 96, 3)
        node = node_module.AEAttentionMapPreview()
        with torch.inference_mode():
            out = node.preview(rec, STEP_GIVEN, 1, TOKENS_SUBJECTS, 0.6, True, image=image)
    finally:
        folder_paths.set_temp_directory(old)
    (result,) = out["result"]
    assert result.ndim == 4 and result.shape[0] == 1 and result.shape[-1] == 3 and result.dtype == torch.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    (entry,) = out["ui"]["images"]
    assert entry["type"] == "temp"
    saved = np.asarray(Image.open(tmp_path / entry["subfolder"] / entry["filename"]))
    assert np.array_equal(saved, (result[0].numpy() * 255).round().astype(np.uint8))


def test_node_declaration(node_module):
    cls = node_module.AEAttentionMapPreview
    assert node_module.NODE_DISPLAY_NAME_MAPPINGS["AEAttentionMapPreview"] == "Attention Map Preview"
    assert cls.OUTPUT_NODE and cls.CATEGORY == "sampling/attend_and_excite" and cls.RETURN_TYPES == ("IMAGE",)
    inputs = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES()["optional"]}
    assert set(inputs) == {"attention", "image", "step", "step_index", "tokens", "opacity", "show_loss_plot"}
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    assert inputs["opacity"][1]["default"] == 0.6


def test_node_error_on_empty_record(node_module):
    rec = replace(make_record([torch.rand(1, 1, 4, 4)]), steps=())
    with pytest.raises(ValueError, match="VAE Decode"):
        node_module.AEAttentionMapPreview().preview(rec, STEP_LAST, 0, TOKENS_SUBJECTS, 0.6, False)


def test_node_reads_the_record_a_sampler_run_published(node_module):
    """The AE_ATTENTION of 'A&E Sampler' / 'Apply Attend-and-Excite' is a slot: empty until a sampler runs, then
    the run's record; two sampler nodes of one prompt publishing into it is an error that names them, and a newer
    prompt replaces the older one's records."""
    from comfy_execution.utils import CurrentNodeContext
    from aande_pack.nodes.engine.record_slot import RecordSlot
    slot, node = RecordSlot(), node_module.AEAttentionMapPreview()
    with pytest.raises(ValueError, match="nothing has been sampled"):
        node.preview(slot, STEP_LAST, 0, TOKENS_SUBJECTS, 0.6, False)
    first, second = make_record([torch.rand(1, 1, 4, 4)]), make_record([torch.rand(1, 1, 4, 4)], total_steps=7)
    with CurrentNodeContext("prompt-1", "5"):
        slot.publish(first)
    assert slot.record() is first
    with CurrentNodeContext("prompt-1", "9"):
        slot.publish(second)
    with pytest.raises(ValueError, match="sampler nodes 5, 9 all ran with this attention output"):
        node.preview(slot, STEP_LAST, 0, TOKENS_SUBJECTS, 0.6, False)
    with CurrentNodeContext("prompt-2", "9"):
        slot.publish(second)
    assert slot.record() is second
    grid = node.preview(slot, STEP_LAST, 0, TOKENS_SUBJECTS, 0.6, False)["result"][0]
    assert grid.shape[0] == 1

"""The toy world (toyworld/): the generator and its held-out plan, the exact judge, the model as ComfyUI objects,
the quick training run, the device job's sanity grid on the CPU, and the test-only loader node in a real server."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import comfy.latent_formats
import comfy.model_patcher
import comfy.sd
import nodes as comfy_nodes
from harness.host import COMFY_DIR, ROOT
from harness.server import ComfyServer, expected_node_names

from aande_pack.nodes.declarations.inputs import ae_inputs
from aande_pack.nodes.declarations.select_tokens import AESelectSubjectTokens
from aande_pack.toyworld import judge, model, sanity, text_encoder, train, vae, world

COMMITTED = ROOT / "toyworld" / "weights" / "toyworld.safetensors"

LOADER = ROOT / "tests" / "demo_nodes" / "aande_toy_loader"


# ---------------------------------------------------------------- the world

def test_every_caption_word_is_one_sd1_clip_token():
    from transformers import CLIPTokenizer
    tokenizer = CLIPTokenizer.from_pretrained(str(COMFY_DIR / "comfy" / "sd1_tokenizer"))
    for word in sorted(world.WORDS):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    rng = np.random.default_rng(0)
    words = {w for _ in range(300) for w in world.draw_scene(rng).caption.split()}
    words |= {w for _, p in world.held_out_prompts() for w in p.split()}
    assert words <= world.WORDS


def test_the_pool_is_a_function_of_its_seed_whatever_the_worker_count():
    images, captions = world.draw_pool(1200, seed=7)  # two generator chunks
    again, again_captions = world.draw_pool(1200, seed=7, workers=2)
    other, _ = world.draw_pool(1200, seed=8)
    assert images.shape == (1200, world.SIZE, world.SIZE, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and captions == again_captions
    assert not np.array_equal(images, other)


def test_absent_drops_one_named_object_from_the_given_share_of_two_object_scenes():
    """--absent's data: the caption still names both objects, the image keeps one of them, in about the share asked
    for (binomial bounds, 5 sigma); one-object scenes and their captions are not touched."""
    rng = np.random.default_rng(11)
    scenes = [world.draw_scene(rng, absent=0.3) for _ in range(3000)]
    named_two = [sc for sc in scenes if sc.caption and len(world.parse_prompt(sc.caption).subjects) == 2]
    dropped = [sc for sc in named_two if len(sc.objects) == 1]
    n, share = len(named_two), len(dropped) / len(named_two)
    assert abs(share - 0.3) < 5 * (0.3 * 0.7 / n) ** 0.5, share
    for sc in dropped:
        assert sc.objects[0].shape in {subject.shape for subject in world.parse_prompt(sc.caption).subjects}
    named_one = [sc for sc in scenes if sc.caption and len(world.parse_prompt(sc.caption).subjects) == 1]
    assert named_one and all(len(sc.objects) == 1 for sc in named_one)
    rng = np.random.default_rng(11)
    plain = [world.draw_scene(rng) for _ in range(1000)]  # the default: every named object is drawn
    assert all(len(sc.objects) == len(world.parse_prompt(sc.caption).subjects) for sc in plain if sc.caption)


def test_training_refuses_an_absent_share_outside_0_to_1(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--out", "w.safetensors", "--absent", "1.5"])
    assert "--absent is a share of scenes, between 0 and 1; got 1.5" in capsys.readouterr().err


def test_training_never_shows_a_held_out_composition_and_shows_every_part():
    rng = np.random.default_rng(3)
    scenes = [world.draw_scene(rng) for _ in range(3000)]
    held_pairs = {frozenset(p) for p in world.HELD_OUT_SHAPE_PAIRS}
    held_combos = {frozenset({(c1, s1), (c2, s2)}) for c1, s1, c2, s2 in world.HELD_OUT_COLOUR_COMBOS}
    pairs, coloured, combos = set(), set(), set()
    for scene in scenes:
        objs = scene.objects
        coloured |= {(o.colour, o.shape) for o in objs}
        if len(objs) == 2:
            pairs.add(frozenset({objs[0].shape, objs[1].shape}))
            combos.add(frozenset({(o.colour, o.shape) for o in objs}))
        if scene.caption:  # what a caption mentions is in its image
            for s in world.parse_prompt(scene.caption).subjects:
                assert any(o.shape == s.shape and s.colour in (None, o.colour) for o in objs), scene.caption
    assert not pairs & held_pairs and not combos & held_combos
    every_pair = {frozenset({a, b}) for a in world.SHAPES for b in world.SHAPES}
    assert pairs == every_pair - held_pairs  # every other pair, same-shape pairs included
    assert coloured == {(c, s) for c in world.COLOURS for s in world.SHAPES}
    empty = sum(not s.caption for s in scenes) / len(scenes)
    assert 0.08 < empty < 0.12
    assert 0.35 < sum(len(s.objects) == 1 for s in scenes) / len(scenes) < 0.45


def test_benchmark_prompts_ask_for_exactly_the_held_out_compositions():
    prompts = world.held_out_prompts()
    assert {c: len(p) for c, p in world.BENCHMARK_PROMPTS.items()} == \
        {"shapes": 6, "shapes_with": 12, "coloured": 12, "colour_combos": 24}
    assert len({p for _, p in prompts}) == len(prompts)
    held_pairs = {frozenset(p) for p in world.HELD_OUT_SHAPE_PAIRS}
    for category, text in prompts:
        parsed = world.parse_prompt(text)
        a, b = parsed.subjects
        assert a.shape != b.shape
        if category == "colour_combos":
            assert frozenset({a.shape, b.shape}) not in held_pairs
            assert world.is_held_out([SimpleNamespace(shape=s.shape, colour=s.colour) for s in parsed.subjects])
        else:
            assert frozenset({a.shape, b.shape}) in held_pairs
        coloured = [s.colour is not None for s in parsed.subjects]
        assert coloured == {"shapes": [False, False], "coloured": [True, True], "colour_combos": [True, True],
                            "shapes_with": [False, parsed.relation == "and"]}[category], text
    # no two combinations are the same pair of coloured shapes in another order
    assert len({frozenset({(c1, s1), (c2, s2)}) for c1, s1, c2, s2 in world.HELD_OUT_COLOUR_COMBOS}) == 24
    for text in world.TRAINING_PROMPTS:
        subjects = world.parse_prompt(text).subjects
        assert not (len(subjects) == 2 and subjects[0].colour and world.is_held_out(
            [SimpleNamespace(shape=s.shape, colour=s.colour) for s in subjects]))


def test_parse_prompt_gives_subjects_and_their_token_positions():
    p = world.parse_prompt("a red circle and a blue square")
    assert p.subjects == (world.Subject("circle", "red"), world.Subject("square", "blue"))
    assert p.relation == "and" and p.token_indices == (3, 7) and p.subject_words == "circle, square"
    q = world.parse_prompt("a square with a square")
    assert q.relation == "with" and not q.has_colours and q.subject_words == "square, square#2"
    assert world.parse_prompt("a ring").subjects == (world.Subject("ring", None),)
    for bad in ("a cat and a frog", "a red circle and", "red circle", "a circle and a star and a ring", ""):
        with pytest.raises(ValueError, match="not a prompt of the toy world"):
            world.parse_prompt(bad)


# ---------------------------------------------------------------- the judge

def test_judge_is_exact_on_clean_renders_at_world_size_and_decoded_size():
    rng = np.random.default_rng(11)
    for i in range(400):
        scene = world.draw_scene(rng, training=False)
        image = world.render(scene)
        if i % 2:
            image = image.repeat(8, axis=0).repeat(8, axis=1)  # as the toy VAE decodes: 256x256
        found = judge.find_objects(image)
        assert sorted((f.shape, f.colour) for f in found) == sorted((o.shape, o.colour) for o in scene.objects)
        for o in scene.objects:  # each box is its object's mask's box
            ys, xs = np.nonzero(world.shape_mask(o.shape, o.cx, o.cy, o.r))
            assert (xs.min(), ys.min(), xs.max(), ys.max()) in [f.bbox for f in found if f.shape == o.shape]
        if scene.caption:
            verdict = judge.answer(found, world.parse_prompt(scene.caption))
            assert verdict["judge_both"] and verdict["judge_binding"] in (True, None)


def test_judge_accepts_a_perfect_answer_to_every_benchmark_prompt():
    rng = np.random.default_rng(4)
    for _, text in world.held_out_prompts():
        image = world.render(world.scene_for(text, rng))
        verdict = judge.answer(judge.find_objects(image), world.parse_prompt(text))
        assert verdict["judge_both"] and verdict["judge_count"] == 2, (text, verdict["judge_objects"])
        assert verdict["judge_binding"] is (True if world.parse_prompt(text).has_colours else None)


def _touching(shape, r, dx, dy):
    """A centre that puts the shape's pixels against the borders the signs of (dx, dy) point to (0: centred)."""
    cx = cy = world.SIZE / 2
    mask = world.shape_mask(shape, cx, cy, r)
    ys, xs = np.nonzero(mask)
    cx += {-1: -xs.min(), 0: 0, 1: world.SIZE - 1 - xs.max()}[dx]
    cy += {-1: -ys.min(), 0: 0, 1: world.SIZE - 1 - ys.max()}[dy]
    return cx, cy


@pytest.mark.parametrize("shape", world.SHAPES)
def test_judge_reads_every_shape_at_both_sizes_touching_each_border(shape):
    for r in world.RADIUS:
        for dx, dy in ((-1, -1), (1, 1), (-1, 1), (1, 0), (0, -1)):
            cx, cy = _touching(shape, r, dx, dy)
            ys, xs = np.nonzero(world.shape_mask(shape, cx, cy, r))
            assert (dx < 0) == (xs.min() == 0) and (dx > 0) == (xs.max() == world.SIZE - 1)
            assert (dy < 0) == (ys.min() == 0) and (dy > 0) == (ys.max() == world.SIZE - 1)
            for k, texture in enumerate(world.TEXTURES):
                obj = world.Obj(shape, "purple", world.COLOURS["purple"], cx, cy, r)
                image = world.render(world.Scene((obj,), world.BACKGROUNDS[k], texture, 5, ""))
                found = judge.find_objects(image)
                assert [(f.shape, f.colour) for f in found] == [(shape, "purple")], (r, dx, dy, texture)


def _image(*objects):
    scene = world.Scene(tuple(world.Obj(s, c, world.COLOURS[c], x, y, 5.5) for s, c, x, y in objects),
                        world.BACKGROUNDS[0], "plain", 0, "")
    return world.render(scene)


def test_judge_verdicts_on_neglect_swapped_colours_and_repeated_shapes():
    prompt = world.parse_prompt("a red circle and a blue square")
    right = judge.answer(judge.find_objects(_image(("circle", "red", 8, 8), ("square", "blue", 24, 24))), prompt)
    assert right["judge_present_1"] and right["judge_present_2"] and right["judge_both"] and right["judge_binding"]
    swapped = judge.answer(judge.find_objects(_image(("circle", "blue", 8, 8), ("square", "red", 24, 24))), prompt)
    assert swapped["judge_both"] and swapped["judge_binding"] is False
    neglect = judge.answer(judge.find_objects(_image(("circle", "red", 16, 16))), prompt)
    assert neglect["judge_present_1"] and not neglect["judge_present_2"] and not neglect["judge_both"]
    assert neglect["judge_count"] == 1 and neglect["judge_objects"].startswith("red circle [")
    turned = judge.answer(judge.find_objects(_image(("circle", "red", 8, 8), ("circle", "blue", 24, 24))), prompt)
    assert not turned["judge_present_2"] and turned["judge_binding"] is False
    bare = judge.answer(judge.find_objects(_image(("circle", "green", 8, 8), ("square", "white", 24, 24))),
                        world.parse_prompt("a circle with a square"))
    assert bare["judge_both"] and bare["judge_binding"] is None
    repeat = world.parse_prompt("a purple square and a blue square")
    one = judge.answer(judge.find_objects(_image(("square", "purple", 16, 16))), repeat)
    assert one["judge_present_1"] and not one["judge_present_2"] and one["judge_binding"] is False
    two = judge.answer(judge.find_objects(_image(("square", "blue", 8, 8), ("square", "purple", 24, 24))), repeat)
    assert two["judge_both"] and two["judge_binding"]
    empty = judge.answer(judge.find_objects(np.full((32, 32, 3), 0.1, np.float32)), world.parse_prompt("a ring"))
    assert empty["judge_present_2"] is None and not empty["judge_both"] and empty["judge_objects"] == "(none)"


def test_judge_metric_interface_takes_the_runners_batch_prompt_or_one_per_image():
    images = torch.from_numpy(np.stack([_image(("star", "yellow", 9, 9), ("ring", "green", 23, 23)),
                                        _image(("star", "yellow", 16, 16))])).repeat_interleave(8, 1).repeat_interleave(8, 2)
    metric = judge.Judge()
    assert metric.name == "judge"
    batch = metric.measure(images, SimpleNamespace(text="a yellow star and a green ring"))
    assert [r["judge_both"] for r in batch] == [True, False] and [r["judge_binding"] for r in batch] == [True, False]
    assert metric.measure(images, "a yellow star and a green ring") == batch
    assert [r["judge_both"] for r in metric.measure(images, ["a ring", "a star"])] == [True, True]
    assert set(batch[0]) == {"judge_present_1", "judge_present_2", "judge_both", "judge_binding", "judge_count",
                             "judge_objects", "judge_background"}
    with pytest.raises(ValueError, match="multiple of 32"):
        metric.measure(torch.zeros(1, 100, 100, 3), "a ring")


# ---------------------------------------------------------------- the model as ComfyUI objects

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The CPU check of the training script, text embeddings trained: its summary and weights file."""
    out = tmp_path_factory.mktemp("toyworld") / "quick.safetensors"
    summary = train.train(train.parse_args(["--device", "cpu", "--quick", "--seed", "3", "--out", str(out),
                                            "--text-embeddings", "trained"]))
    return summary, out


@pytest.fixture(scope="module")
def toy(quick_run):
    return model.load(quick_run[1], "cpu")


def test_quick_training_lowers_the_loss_and_writes_a_small_fp16_file(quick_run):
    summary, out = quick_run
    assert summary["steps_done"] == train.QUICK_DEFAULTS["steps"] and not summary["stopped_early"]
    # the same fixed batch (its noise and timesteps), before and after: the EMA weights must fit it better
    assert summary["eval_loss_after"] < 0.9 * summary["eval_loss_before"]
    assert 0.9 < summary["eval_loss_before"] < 1.1  # zero-initialised output: predicts 0, MSE of unit noise
    assert out.stat().st_size <= 20e6
    state, meta, text = model.read(out)
    assert {t.dtype for t in state.values()} == {torch.float16}
    assert meta["text_embeddings"] == "trained" and text["position"].shape == (77, 768)
    training = json.loads(meta["training"])
    assert training["seed"] == 3 and training["steps_done"] == train.QUICK_DEFAULTS["steps"]
    assert training["batch"] == train.QUICK_DEFAULTS["batch"] and training["lr"] == train.QUICK_DEFAULTS["lr"]
    assert json.loads(meta["unet_config"]) == model.unet.UNET_CONFIG
    assert sum(t.numel() for t in state.values()) == summary["unet_parameters"]


def test_load_gives_comfy_objects_with_the_trained_weights(quick_run, toy):
    mdl, clip, toy_vae = toy
    assert isinstance(mdl, comfy.model_patcher.ModelPatcher) and isinstance(clip, comfy.sd.CLIP)
    assert isinstance(mdl.model.latent_format, comfy.latent_formats.SD15)
    state, _, _ = model.read(quick_run[1])
    loaded = mdl.model.diffusion_model.state_dict()
    assert all(torch.equal(loaded[k], v.float()) for k, v in state.items())


def test_load_refuses_a_file_whose_text_encoder_differs(quick_run, tmp_path):
    state, meta, text = model.read(quick_run[1])
    from safetensors.torch import save_file
    tensors = {**{f"diffusion_model.{k}": v for k, v in state.items()},
               **{f"{text_encoder.TEXT_PREFIX}{k}": v for k, v in text.items()}}
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "clip_digest": "0" * 16})
    with pytest.raises(ValueError, match="embeddings differ"):
        model.load(bad, "cpu")
    rowless = tmp_path / "rowless.safetensors"
    save_file({f"diffusion_model.{k}": v for k, v in state.items()}, str(rowless), metadata=meta)
    with pytest.raises(ValueError, match="'trained' but holds no text rows"):
        model.load(rowless, "cpu")
    with pytest.raises(FileNotFoundError, match="toyworld.train"):
        model.load(tmp_path / "missing.safetensors", "cpu")


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """The CPU check with the default text embeddings, frozen (the committed model's text encoder)."""
    out = tmp_path_factory.mktemp("toyworld") / "frozen.safetensors"
    train.train(train.parse_args(["--device", "cpu", "--quick", "--seed", "3", "--out", str(out)]))
    return out


def test_frozen_text_embeddings_store_no_rows_and_load_the_seeds_tables(frozen_run):
    _, meta, text = model.read(frozen_run)
    assert meta["text_embeddings"] == "frozen" and text is None
    _, clip, _ = model.load(frozen_run, "cpu")
    tokens, position = text_encoder.embedding_tables(49408, 77, 768)
    assert abs(float(tokens.mean())) < 0.01 and abs(float(tokens.std()) - 1) < 0.01
    text = "a red circle and a blue square"
    with torch.inference_mode():
        cond = text_encoder.encode(clip, text)[0]
    expected = torch.nn.functional.layer_norm(tokens[text_encoder.token_ids(clip, text)] + position, (768,))
    assert torch.allclose(cond, expected, atol=1e-5)


def test_trained_text_rows_moved_and_the_loaded_clip_gives_what_training_fed_the_unet(quick_run, toy):
    """The loaded CLIP Text Encode output equals text_encoder.Trainable's on the stored rows (what the UNet saw in
    training), and the rows differ from the seed's (they trained); other rows stay the seed's."""
    _, _, stored = model.read(quick_run[1])
    _, clip, _ = toy
    tokens, position = text_encoder.embedding_tables(49408, 77, 768)
    trainable = text_encoder.Trainable(stored["token_ids"], tokens, position)
    assert not torch.equal(trainable.tokens, stored["tokens"]) and not torch.equal(position, stored["position"])
    with torch.no_grad():
        trainable.tokens.copy_(stored["tokens"])
        trainable.position.copy_(stored["position"])
    _, captions = world.draw_pool(train.QUICK_DEFAULTS["pool"], 3, workers=1)  # the quick run's captions
    words = sorted(set(captions))[:4] + [""]
    with torch.inference_mode():
        cond = torch.cat([text_encoder.encode(clip, w) for w in words])
        fed = trainable(torch.tensor([text_encoder.token_ids(clip, w) for w in words]))
    assert torch.allclose(cond, fed, atol=1e-5)
    used = set(stored["token_ids"].tolist())
    assert {49406, 49407} <= used and len(used) <= 2 + len(world.WORDS)  # start, end and the captions' words
    loaded = clip.cond_stage_model.clip_l.transformer.text_model.embeddings.token_embedding.weight
    unused = 12345
    assert unused not in used and torch.equal(loaded[unused].cpu(), tokens[unused])


def test_toy_clip_puts_each_word_at_its_own_position_only(toy):
    _, clip, _ = toy
    text = "a red circle and a blue square"
    with torch.inference_mode():
        cond = text_encoder.encode(clip, text)[0]
        other = text_encoder.encode(clip, "a green circle with a blue ring")[0]
        _, selection = AESelectSubjectTokens().select(clip, text, world.parse_prompt(text).subject_words)
    assert selection.token_indices == world.parse_prompt(text).token_indices == (3, 7)
    assert torch.equal(cond[3], other[3]) and torch.equal(cond[6], other[6])  # circle@3, blue@6 in both
    assert not torch.equal(cond[2], other[2])


def test_toy_vae_is_invertible_and_matches_comfys_latent_convention(toy):
    mdl, _, toy_vae = toy
    assert vae.SD15_LATENT_SCALE == comfy.latent_formats.SD15().scale_factor
    rng = np.random.default_rng(2)
    small = torch.from_numpy(np.stack([world.render(world.draw_scene(rng)) for _ in range(3)]))
    big = small.repeat_interleave(8, 1).repeat_interleave(8, 2)
    (latent,) = comfy_nodes.VAEEncode().encode(toy_vae, big)
    assert latent["samples"].shape == (3, 4, 32, 32)
    assert torch.allclose(comfy_nodes.VAEDecode().decode(toy_vae, latent)[0], big, atol=1e-6)
    unet_input = mdl.model.process_latent_in(latent["samples"])  # what the UNet sees: RGB in [-1, 1], zeros
    assert torch.allclose(unet_input[:, :3], small.movedim(-1, 1) * 2 - 1, atol=1e-6)
    assert torch.equal(unet_input[:, 3], torch.zeros(3, 32, 32))
    (empty,) = comfy_nodes.EmptyLatentImage().generate(256, 256, 2)
    assert comfy_nodes.VAEDecode().decode(toy_vae, empty)[0].shape == (2, 256, 256, 3)


@pytest.fixture(scope="module")
def centred_run(tmp_path_factory):
    """The CPU check with the toy VAE centred on the world's mean background."""
    out = tmp_path_factory.mktemp("toyworld") / "centred.safetensors"
    train.train(train.parse_args(["--device", "cpu", "--quick", "--seed", "3", "--out", str(out),
                                  "--latent-centre", "background"]))
    return out


def test_centred_latent_puts_comfys_empty_latent_on_the_worlds_mean_background(centred_run):
    mean_background = np.mean(np.array(world.BACKGROUNDS), axis=0)  # RGB in 0..1
    _, meta, _ = model.read(centred_run)
    assert np.allclose(json.loads(meta["latent_centre"]), 2 * mean_background - 1, atol=1e-6)
    assert json.loads(meta["training"])["latent_centre"] == "background"
    mdl, _, toy_vae = model.load(centred_run, "cpu")
    (empty,) = comfy_nodes.EmptyLatentImage().generate(256, 256, 1)
    decoded = comfy_nodes.VAEDecode().decode(toy_vae, empty)[0]
    assert torch.allclose(decoded, torch.tensor(mean_background, dtype=torch.float32).expand(1, 256, 256, 3),
                          atol=1e-6)
    # what training fed the UNet is what VAEEncode then process_latent_in give for the same image
    rng = np.random.default_rng(4)
    small = torch.from_numpy(np.stack([world.render(world.draw_scene(rng)) for _ in range(2)]))
    (latent,) = comfy_nodes.VAEEncode().encode(toy_vae, small.repeat_interleave(8, 1).repeat_interleave(8, 2))
    pool = (small * 255).round().to(torch.uint8).movedim(-1, 1)
    batches = train.Batches(pool, torch.zeros(2, dtype=torch.long), torch.Generator(), toy_vae)
    fed = batches.x0(torch.arange(2), torch.zeros(2, dtype=torch.bool))
    assert torch.allclose(mdl.model.process_latent_in(latent["samples"]), fed, atol=2 / 255)
    assert torch.allclose(comfy_nodes.VAEDecode().decode(toy_vae, latent)[0][:, ::8, ::8], small, atol=1e-6)


def test_the_committed_model_keeps_the_zero_centre_its_file_predates():
    _, meta, _ = model.read(COMMITTED)
    assert "latent_centre" not in meta
    _, _, toy_vae = model.load(COMMITTED, "cpu")
    (empty,) = comfy_nodes.EmptyLatentImage().generate(64, 64, 1)
    assert torch.allclose(comfy_nodes.VAEDecode().decode(toy_vae, empty)[0], torch.full((1, 64, 64, 3), 0.5))


def test_border_brightness_reads_the_background_not_the_objects():
    image = _image(("square", "white", 5, 16), ("circle", "red", 24, 16))  # the square touches the left border
    assert judge.border_brightness(image) == pytest.approx(max(world.BACKGROUNDS[0]), abs=1e-6)
    decoded_size = image.repeat(8, 0).repeat(8, 1)
    assert judge.border_brightness(decoded_size) == pytest.approx(max(world.BACKGROUNDS[0]), abs=1e-6)
    assert judge.border_brightness(np.full((32, 32, 3), 0.5, np.float32)) == 0.5


def test_standard_ksampler_samples_the_toy_model(toy):
    mdl, clip, toy_vae = toy
    with torch.inference_mode():
        positive = comfy_nodes.CLIPTextEncode().encode(clip, "a red circle")[0]
        negative = comfy_nodes.CLIPTextEncode().encode(clip, "")[0]
        latent = comfy_nodes.EmptyLatentImage().generate(256, 256, 1)[0]
        (out,) = comfy_nodes.common_ksampler(mdl, 0, 3, 7.5, "ddim", "ddim_uniform", positive, negative, latent)
        image = comfy_nodes.VAEDecode().decode(toy_vae, out)[0]
    assert image.shape == (1, 256, 256, 3) and torch.isfinite(image).all()
    assert 0 <= float(image.min()) and float(image.max()) <= 1


# ---------------------------------------------------------------- the device job's sanity grid, on the CPU

def test_sanity_grid_samples_judges_and_writes_its_files(quick_run, tmp_path):
    report = sanity.main(["--weights", str(quick_run[1]), "--out", str(tmp_path), "--device", "cpu", "--steps", "2",
                          "--seeds", "1", "--prompts", "1"])
    assert [(r["prompt"], r["mode"]) for r in report["images"]] == \
        [(world.TRAINING_PROMPTS[0], m) for m in ("standard", "ae", "ae_latent2")]
    assert json.loads((tmp_path / "sanity.json").read_text())["summary"] == report["summary"]
    assert set(report["summary"]) == {"training/standard", "training/ae", "training/ae_latent2"}
    standard, ae = report["images"][0], report["images"][1]
    assert standard["gradient_passes_of_batch"] == 0 and ae["gradient_passes_of_batch"] > 0
    assert standard["loss_first"] is not None and len(standard["attention_peak_on_subject"]) == 1
    with Image.open(tmp_path / "sanity_grid.png") as grid:
        assert grid.size[0] >= 3 * world.SIZE * 3
    late = sanity.main(["--weights", str(quick_run[1]), "--out", str(tmp_path / "late"), "--device", "cpu",
                        "--prompts", "2", "--deadline", "0"])
    assert late["images"] == [] and len(late["skipped"]) == 2 * 3


def test_attention_peak_check_reads_the_subject_maps_against_the_judged_boxes():
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 0, 1, 1] = 1.0  # circle's map peaks at pixel (6, 6), inside the circle's box
    maps[0, 1, 1, 6] = 1.0  # square's map peaks at (26, 6): far from the square at the bottom right
    record = SimpleNamespace(steps=[SimpleNamespace(subject_maps=maps)])
    found = [judge.find_objects(_image(("circle", "red", 7, 7), ("square", "blue", 24, 24)))]
    prompt = world.parse_prompt("a red circle and a blue square")
    assert sanity.attention_on_subjects(record, found, prompt) == [[True, False]]
    assert sanity.attention_on_subjects(record, [[]], prompt) == [[None, None]]


# ---------------------------------------------------------------- the loader node in a real server

def test_loader_node_feeds_the_pack_in_a_real_server(quick_run, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "quick.safetensors").symlink_to(quick_run[1])
    monkeypatch.setenv("AANDE_TOY_WEIGHTS", str(weights))
    server = ComfyServer(tmp_path / "comfyui", extra_custom_nodes=[LOADER], log_name="server-toyworld")
    ae = {name: spec[1]["default"] for name, spec in ae_inputs().items()}
    ae.update(max_refinement_steps=2)
    prompt = {
        "1": {"class_type": "AELoadToyModel", "inputs": {"weights": "quick.safetensors"}},
        "2": {"class_type": "AESelectSubjectTokens",
              "inputs": {"clip": ["1", 1], "text": "a red circle and a blue square", "subjects": "circle, square"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "5": {"class_type": "AEKSampler", "inputs": {
            "model": ["1", 0], "seed": 1, "steps": 3, "cfg": 7.5, "sampler_name": "ddim", "scheduler": "ddim_uniform",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0, **ae}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "toy"}},
        "8": {"class_type": "AEAttentionMapPreview", "inputs": {
            "attention": ["5", 1], "image": ["6", 0], "step": "last A&E step", "step_index": 0,
            "tokens": "subjects", "opacity": 0.6, "show_loss_plot": True}},
    }
    try:
        server.start()
        server.check_registration(expected_node_names())
        info = server.get("/object_info/AELoadToyModel")["AELoadToyModel"]
        assert info["output"] == ["MODEL", "CLIP", "VAE"]
        assert info["input"]["required"]["weights"][0] == ["quick.safetensors"]
        outputs = server.run_prompt(prompt)
        saved = outputs["7"]["images"][0]
        with Image.open(server.base_dir / "output" / saved["subfolder"] / saved["filename"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert outputs["8"]["images"]
    finally:
        server.stop()
    assert pixels.shape == (256, 256, 3)
    blocks = pixels.reshape(32, 8, 32, 8, 3)  # the toy VAE decodes each latent cell to an 8x8 block
    assert (blocks == blocks[:, :1, :, :1]).all()

"""The paper's evaluation metrics (aande_metrics/): templates, halves, preprocessing, the CLIP scores and the BLIP
captions, each against an independent computation: PIL for the image preprocessing (as OpenAI's clip and LAVIS
ran it), the tiny random-weight models of tests/harness/metric_models.py called directly through transformers'
forward() and generate() for the scores and captions, numpy for the feature arithmetic."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aande_pack.aande_metrics.blip_caption import BlipCaptioner
from aande_pack.aande_metrics.clip_similarity import ClipScorer
from aande_pack.aande_metrics.halves import PromptSplitError, split_halves
from aande_pack.aande_metrics.model_folder import ModelFolderError
from aande_pack.aande_metrics.preprocess import blip_pixels, clip_pixels
from aande_pack.aande_metrics.templates import IMAGENET_TEMPLATES, fill_templates
from harness.metric_models import BLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE, tiny_blip_folder, tiny_clip_folder

# The prompts of the paper's three sets (animals, animals_objects, objects), shared by the project.
PROMPTS = Path("/work/shared/data/ae_prompts.json")
# OpenAI CLIP's normalisation (clip/clip.py _transform), which LAVIS's BlipImageBaseProcessor repeats.
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return tiny_clip_folder(tmp_path_factory.mktemp("metrics") / "clip")


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return tiny_blip_folder(tmp_path_factory.mktemp("metrics") / "blip")


@pytest.fixture(scope="module")
def scorer(clip_folder):
    return ClipScorer.from_folder(clip_folder)


@pytest.fixture(scope="module")
def captioner(blip_folder):
    return BlipCaptioner.from_folder(blip_folder)


def noise_images(shape, seed=0):
    """uint8 images (B, H, W, 3) and the same as a ComfyUI IMAGE in 0..1."""
    levels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return levels, torch.from_numpy(levels.astype(np.float32) / 255.0)


# --- the reference preprocessing: torchvision's transforms on PIL images, written out with PIL -----------------

def pil_clip_pixels(levels, size):
    """OpenAI clip's preprocess: Resize(size) of the short side (bicubic), CenterCrop(size), ToTensor, Normalize."""
    out = []
    for image in levels:
        img = Image.fromarray(image)
        w, h = img.size
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        img = img.resize((nw, nh), Image.BICUBIC)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
        out.append(((np.asarray(img, np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def pil_blip_pixels(levels, size):
    """LAVIS's blip_image_eval: Resize((size, size)) (bicubic), ToTensor, Normalize."""
    out = [((np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), np.float32) / 255.0 - MEAN)
            / STD).transpose(2, 0, 1) for image in levels]
    return torch.from_numpy(np.stack(out))


# --- templates and halves ---------------------------------------------------------------------------------------

def test_templates_are_the_official_eighty():
    # sha256 of "\n".join(imagenet_templates) of metrics/imagenet_utils.py, yuval-alaluf/Attend-and-Excite
    assert hashlib.sha256("\n".join(IMAGENET_TEMPLATES).encode()).hexdigest() == \
        "4f976686fb651bb5803d4689dcd849f75efe0ef19a3c801355bc9a6f03c8a5af"
    assert len(set(IMAGENET_TEMPLATES)) == 80 and all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)


def test_templates_are_filled_with_the_official_article_fixes():
    filled = dict(zip(IMAGENET_TEMPLATES, fill_templates("a cat and a frog")))
    assert filled["a photo of a {}."] == "a photo of a cat and a frog."          # "a a cat" -> "a cat"
    assert filled["a photo of the {}."] == "a photo of a cat and a frog."        # "the a cat" -> "a cat"
    assert filled["the {} in a video game."] == "a cat and a frog in a video game."
    assert filled["a photo of many {}."] == "a photo of many a cat and a frog."   # untouched
    # plain substring replacements, as in the official code: they also act inside and across words
    assert dict(zip(IMAGENET_TEMPLATES, fill_templates("a pizza and a apple")))["a photo of many {}."] == \
        "a photo of many a pizzand apple."
    assert dict(zip(IMAGENET_TEMPLATES, fill_templates("apple")))["a photo of the {}."] == "a photo of apple."


def test_every_paper_prompt_splits_into_its_two_subjects():
    if not PROMPTS.is_file():
        pytest.skip(f"{PROMPTS} (the paper's 276 prompts) is not on this machine")
    prompts = [p for group in json.loads(PROMPTS.read_text()).values() for p in group]
    assert len(prompts) == 276
    for prompt in prompts:
        first, second = split_halves(prompt)
        separator = " and " if " and " in prompt else " with "
        assert first + separator + second == prompt, prompt   # two pieces, nothing dropped or stripped
        assert first.startswith("a ") and second.startswith("a ") and len(first) > 2 and len(second) > 2, prompt


def test_halves_follow_the_official_split_rules():
    assert split_halves("a cat with a hat and a dog") == ("a cat with a hat", "a dog")   # " and " comes first
    assert split_halves("a dog with a crown") == ("a dog", "a crown")
    assert split_halves("a cat and a dog and a frog") == ("a cat", "a dog")           # a third piece is ignored
    with pytest.raises(PromptSplitError, match="' and ' or ' with '"):
        split_halves("a cat on a mat")
    with pytest.raises(PromptSplitError, match="both must name a subject"):
        split_halves(" and a frog")


# --- preprocessing ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,clip_size,blip_size", [
    ((2, 64, 64, 3), CLIP_IMAGE_SIZE, BLIP_IMAGE_SIZE), ((1, 37, 53, 3), CLIP_IMAGE_SIZE, BLIP_IMAGE_SIZE),
    ((1, 20, 29, 3), CLIP_IMAGE_SIZE, BLIP_IMAGE_SIZE), ((1, 48, 80, 3), CLIP_IMAGE_SIZE, BLIP_IMAGE_SIZE),
    ((1, 512, 512, 3), 224, 384)])
def test_preprocessing_matches_pil_bicubic(shape, clip_size, blip_size):
    """The torch port against PIL on 8-bit images, down- and upscaling, square and landscape (where every Pillow
    release starts with the horizontal pass, as the paper's did), and the paper's 512 -> 224 and 384: equal up to
    one 8-bit level on a few pixels."""
    levels, images = noise_images(shape)
    for mine, ref in ((clip_pixels(images, clip_size), pil_clip_pixels(levels, clip_size)),
                      (blip_pixels(images, blip_size), pil_blip_pixels(levels, blip_size))):
        assert mine.shape == ref.shape and mine.dtype == torch.float32
        level_diff = ((mine - ref) * torch.from_numpy(STD).view(1, 3, 1, 1) * 255).abs()
        assert level_diff.max() <= 1.0 + 1e-3
        assert (level_diff > 0.5).float().mean() < 0.002


def test_preprocessing_rounds_to_8_bit_levels_and_clips_to_0_1():
    """As the saved PNG files of the paper: a value within half a level of a level is that level, and values
    outside 0..1 are the ends of the range."""
    _, images = noise_images((1, 40, 40, 3), seed=3)
    jitter = (torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * (0.9 / 255)
    torch.testing.assert_close(clip_pixels(images + jitter, CLIP_IMAGE_SIZE), clip_pixels(images, CLIP_IMAGE_SIZE))
    stretched = images * 1.6 - 0.3
    torch.testing.assert_close(blip_pixels(stretched, 16), blip_pixels(stretched.clamp(0, 1), 16))


@pytest.mark.parametrize("bad,message", [(torch.rand(1, 3, 32, 32), r"\(B, H, W, 3\).*\(1, 3, 32, 32\)"),
                                         (torch.rand(32, 32, 3), r"\(B, H, W, 3\)"),
                                         (torch.zeros(1, 8, 8, 3, dtype=torch.uint8), "float IMAGE"),
                                         (torch.rand(0, 8, 8, 3), "empty")])
def test_bad_images_are_refused(scorer, bad, message):
    with pytest.raises(ValueError, match=message):
        scorer.image_features(bad)


# --- the CLIP scores --------------------------------------------------------------------------------------------

def reference_text_feature(model, tokenizer, prompt):
    """metrics/imagenet_utils.get_embedding_for_prompt with the tiny model: normalise, mean, normalise (numpy)."""
    texts = [t.format(prompt).replace("a a", "a").replace("the a", "a") for t in IMAGENET_TEMPLATES]
    tokens = tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt")
    pixels = torch.zeros(1, 3, CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE)
    with torch.no_grad():
        embeds = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                       pixel_values=pixels).text_embeds.numpy().astype(np.float64)
    mean = (embeds / np.linalg.norm(embeds, axis=1, keepdims=True)).mean(0)
    return mean / np.linalg.norm(mean)


def reference_image_features(model, tokenizer, levels):
    tokens = tokenizer(["x"], return_tensors="pt")
    with torch.no_grad():
        embeds = model(input_ids=tokens.input_ids, pixel_values=pil_clip_pixels(levels, CLIP_IMAGE_SIZE)).image_embeds
    embeds = embeds.numpy().astype(np.float64)
    return embeds / np.linalg.norm(embeds, axis=1, keepdims=True)


def test_clip_scores_match_an_independent_computation(scorer):
    levels, images = noise_images((3, 64, 96, 3), seed=1)   # a size PIL and the port resize to the same levels
    prompt = "a cat and a frog"
    got = scorer.score(images, prompt)
    image = reference_image_features(scorer.model, scorer.tokenizer, levels)
    full, cat, frog = (image @ reference_text_feature(scorer.model, scorer.tokenizer, p)
                       for p in (prompt, "a cat", "a frog"))
    assert [sorted(g) for g in got] == [sorted(["clip_full", "clip_first_half", "clip_second_half",
                                                "clip_min_half"])] * 3
    np.testing.assert_allclose([g["clip_full"] for g in got], full, atol=2e-5)
    np.testing.assert_allclose([g["clip_first_half"] for g in got], cat, atol=2e-5)
    np.testing.assert_allclose([g["clip_second_half"] for g in got], frog, atol=2e-5)
    np.testing.assert_allclose([g["clip_min_half"] for g in got], np.minimum(cat, frog), atol=2e-5)
    assert len({round(g["clip_full"], 6) for g in got}) == 3   # the images do get different scores


def test_caption_similarity_uses_the_bare_caption_against_the_templated_prompt(scorer):
    captions = ["a cat sitting next to a frog", "two dogs on a street"]
    tokens = scorer.tokenizer(captions, padding=True, return_tensors="pt")
    with torch.no_grad():
        bare = scorer.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                            pixel_values=torch.zeros(1, 3, CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE)).text_embeds
    bare = bare.numpy().astype(np.float64)
    bare /= np.linalg.norm(bare, axis=1, keepdims=True)
    want = bare @ reference_text_feature(scorer.model, scorer.tokenizer, "a cat and a frog")
    np.testing.assert_allclose(scorer.caption_similarity(captions, "a cat and a frog"), want, atol=2e-5)
    templated = [reference_text_feature(scorer.model, scorer.tokenizer, c) for c in captions]
    assert not np.allclose([t @ reference_text_feature(scorer.model, scorer.tokenizer, "a cat and a frog")
                            for t in templated], want, atol=1e-3)   # templating the captions would differ


def test_prompt_features_are_computed_once_per_prompt(clip_folder):
    scorer = ClipScorer.from_folder(clip_folder)
    calls = []
    hook = scorer.model.text_model.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        _, images = noise_images((2, 32, 32, 3))
        first = scorer.score(images, "a dog with a crown")
        assert len(calls) == 3                          # full prompt, "a dog", "a crown"
        assert scorer.score(images, "a dog with a crown") == first and len(calls) == 3
        scorer.caption_similarity(["a dog"], "a dog with a crown")
        assert len(calls) == 4                          # only the caption is new
    finally:
        hook.remove()


def test_clip_refuses_prompts_it_cannot_score(scorer):
    _, images = noise_images((1, 32, 32, 3))
    with pytest.raises(PromptSplitError, match="cannot split"):
        scorer.score(images, "a lonely cat")
    with pytest.raises(ValueError, match="longer than CLIP's 77 tokens"):
        scorer.score(images, "a cat and a " + "very " * 70 + "large frog")
    with pytest.raises(ValueError, match="prompt is empty"):
        scorer.caption_similarity(["a cat"], "  ")


# --- the BLIP captions ------------------------------------------------------------------------------------------

def spy_generate(model, monkeypatch):
    seen = []
    original = model.generate

    def generate(**kwargs):
        seen.append({**kwargs, "input_ids": kwargs["input_ids"].clone()})  # BLIP overwrites [CLS] in place
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return seen


def test_captions_use_lavis_default_decoding(captioner, monkeypatch):
    seen = spy_generate(captioner.model, monkeypatch)
    _, images = noise_images((2, 40, 40, 3))
    captions = captioner.caption(images)
    (kwargs,) = seen
    # lavis/models/blip_models/blip_caption.py BlipCaption.generate defaults: beam search (no nucleus sampling),
    # 3 beams, max_length 30, min_length 10, repetition_penalty 1.0
    assert {k: kwargs[k] for k in ("num_beams", "max_length", "min_length", "repetition_penalty", "do_sample")} == \
        {"num_beams": 3, "max_length": 30, "min_length": 10, "repetition_penalty": 1.0, "do_sample": False}
    # lavis/configs/models/blip_caption_base_coco.yaml: prompt "a picture of ", tokenized with [CLS] and [SEP]
    assert [captioner.tokenizer.convert_ids_to_tokens(row) for row in kwargs["input_ids"].tolist()] == \
        [["[CLS]", "a", "picture", "of", "[SEP]"]] * 2
    assert len(captions) == 2 and all(isinstance(c, str) and not c.startswith("a picture of") for c in captions)


def test_captions_match_an_independent_generation(captioner):
    levels, images = noise_images((3, 64, 64, 3), seed=2)   # a size PIL and the port resize to the same levels
    prompt = captioner.tokenizer(["a picture of "] * 3, return_tensors="pt").input_ids
    with torch.no_grad():
        out = captioner.model.generate(pixel_values=pil_blip_pixels(levels, BLIP_IMAGE_SIZE), input_ids=prompt,
                                       num_beams=3, max_length=30, min_length=10, repetition_penalty=1.0)
    # LAVIS BlipCaption.generate: decode, then cut len(prompt) characters
    want = [d[len("a picture of "):] for d in captioner.tokenizer.batch_decode(out, skip_special_tokens=True)]
    assert captioner.caption(images) == want
    assert len(set(want)) > 1   # the tiny model's captions depend on the image


def test_the_models_own_generation_defaults_do_not_change_the_decoding(blip_folder, captioner):
    """A folder's config can carry generation defaults (the real one's text_config has num_beams 1, max_length 20);
    the decoder's defaults here are LAVIS-unlike on purpose and must not reach the captions."""
    other = BlipCaptioner.from_folder(blip_folder)
    for config in (other.model.generation_config, other.model.text_decoder.generation_config):
        config.update(num_beams=1, max_length=14, min_length=0, no_repeat_ngram_size=1)
    _, images = noise_images((2, 40, 40, 3), seed=4)
    assert other.caption(images) == captioner.caption(images)
    prompt = other.tokenizer(["a picture of "] * 2, return_tensors="pt").input_ids
    with torch.no_grad():   # the defaults do take effect when nothing overrides them
        plain = other.model.generate(pixel_values=blip_pixels(images, BLIP_IMAGE_SIZE), input_ids=prompt)
    assert plain.shape[1] <= 14


# --- model folders ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,repo", [(ClipScorer, "openai/clip-vit-base-patch16"),
                                      (BlipCaptioner, "Salesforce/blip-image-captioning-base")])
def test_a_missing_folder_says_what_to_download_where(cls, repo, tmp_path):
    folder = tmp_path / "models" / "nothing_here"
    with pytest.raises(ModelFolderError) as e:
        cls.from_folder(folder)
    message = str(e.value)
    assert str(folder) in message and "does not exist" in message
    assert f'hf download {repo} --local-dir "{folder}"' in message and f"https://huggingface.co/{repo}" in message


def test_an_incomplete_folder_lists_what_is_missing(clip_folder, tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    shutil.copy(clip_folder / "config.json", folder / "config.json")
    with pytest.raises(ModelFolderError, match=r"incomplete: it has no weights \(model\.safetensors or "
                                               r"pytorch_model\.bin\), no tokenizer") as e:
        ClipScorer.from_folder(folder)
    assert str(folder) in str(e.value) and "openai/clip-vit-base-patch16" in str(e.value)


def test_a_folder_of_another_model_or_a_broken_config_is_refused(clip_folder, blip_folder, tmp_path):
    with pytest.raises(ModelFolderError, match="holds a model of type 'blip', not 'clip'"):
        ClipScorer.from_folder(blip_folder)
    with pytest.raises(ModelFolderError, match="holds a model of type 'clip', not 'blip'"):
        BlipCaptioner.from_folder(clip_folder)
    broken = Path(shutil.copytree(clip_folder, tmp_path / "clip"))
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelFolderError, match="could not be loaded") as e:
        ClipScorer.from_folder(broken)
    assert str(broken) in str(e.value)

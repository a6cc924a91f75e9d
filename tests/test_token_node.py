"""The "Select Subject Tokens" node with real (tiny, random-weight) ComfyUI CLIP objects: its CONDITIONING must be
CLIP Text Encode's, bit for bit, plus the attached selection, which describes that conditioning's tokens."""
import pytest
import safetensors.torch
import torch

from harness.host import import_comfy
from harness.weights import random_state_dict

import_comfy()
import comfy.sd  # noqa: E402
import comfy.supported_models_base  # noqa: E402
import nodes as comfy_nodes  # noqa: E402
from comfy import sd1_clip, sdxl_clip  # noqa: E402
from comfy.text_encoders import sd2_clip  # noqa: E402

from aande_pack.aande_core.selection import COND_KEY  # noqa: E402
from aande_pack.nodes.compat import tokenizer_family  # noqa: E402
from aande_pack.nodes.declarations.select_tokens import AESelectSubjectTokens  # noqa: E402

# 3 layers (SD2/SDXL read the penultimate one), 64 wide: a real CLIP text model, only small
TINY = {"num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
        "projection_dim": 64}
FAMILIES = {"sd1": (sd1_clip.SD1Tokenizer, sd1_clip.SD1ClipModel),
            "sd2": (sd2_clip.SD2Tokenizer, sd2_clip.SD2ClipModel),
            "sdxl": (sdxl_clip.SDXLTokenizer, sdxl_clip.SDXLClipModel)}


def tiny_clip(family, embedding_directory=None, seed=0):
    tokenizer, model = FAMILIES[family]
    options = {f"{name}_model_config": TINY for name in ("clip_l", "clip_h", "clip_g")}
    with torch.inference_mode():
        clip = comfy.sd.CLIP(comfy.supported_models_base.ClipTarget(tokenizer, model),
                             embedding_directory=embedding_directory, model_options=options)
        clip.cond_stage_model.load_state_dict(random_state_dict(clip.cond_stage_model, seed))
    return clip


@pytest.fixture(scope="module", params=list(FAMILIES))
def clip(request):
    return tiny_clip(request.param)


def run_both(clip, text, subjects):
    with torch.inference_mode():
        reference = comfy_nodes.CLIPTextEncode().encode(clip, text)[0]
        conditioning, selection = AESelectSubjectTokens().select(clip, text, subjects)
    return reference, conditioning, selection


def assert_same_conditioning(reference, conditioning):
    assert len(conditioning) == len(reference)
    for (cond, extra), (ref_cond, ref_extra) in zip(conditioning, reference):
        assert torch.equal(cond, ref_cond)
        assert set(extra) == set(ref_extra) | {COND_KEY}
        for key, value in ref_extra.items():
            assert torch.equal(extra[key], value) if isinstance(value, torch.Tensor) else extra[key] == value


def test_conditioning_is_clip_text_encodes_plus_the_selection(clip):
    text = "a photo of a (porcupine:1.2) and a cat"
    reference, conditioning, selection = run_both(clip, text, "porcupine, cat")
    assert_same_conditioning(reference, conditioning)
    family = tokenizer_family(clip.tokenize(text))
    assert selection.family == family
    # a=1 photo=2 of=3 a=4 por=5 cup=6 ine=7 and=8 a=9 cat=10
    assert selection.token_indices == (5, 10)
    assert selection.tokens == ("por", "cat")
    assert selection.prompt_indices == tuple(range(1, 11))
    assert selection.prompt_tokens == ("a", "photo", "of", "a", "por", "cup", "ine", "and", "a", "cat")
    assert selection.context_len == conditioning[0][0].shape[1] == 77
    assert selection.prompt == text
    assert conditioning[0][1][COND_KEY] == selection


def test_long_prompt_spans_two_chunks():
    clip = tiny_clip("sd1")
    text = " ".join(["a green meadow with tall grass and flowers"] * 11) + " and a cat beside a frog"
    reference, conditioning, selection = run_both(clip, text, "cat, frog")
    assert_same_conditioning(reference, conditioning)
    assert selection.context_len == conditioning[0][0].shape[1] == 154
    # 11 x 8 filler tokens + "and a" = 90 prompt tokens before "cat": the 16th token of chunk 2
    assert selection.token_indices == (77 + 16, 77 + 19)  # cat, beside, a, frog
    assert len(selection.prompt_indices) == 94 and 76 not in selection.prompt_indices


def test_embedding_shifts_positions_and_is_encoded_like_clip_text_encode(tmp_path):
    vectors = torch.randn(2, TINY["hidden_size"], generator=torch.Generator().manual_seed(3))
    safetensors.torch.save_file({"clip_l": vectors}, str(tmp_path / "pet.safetensors"))
    clip = tiny_clip("sd1", embedding_directory=str(tmp_path))
    text = "a embedding:pet cat and a frog"
    reference, conditioning, selection = run_both(clip, text, "embedding:pet, frog")
    assert_same_conditioning(reference, conditioning)
    assert selection.token_indices == (2, 7)  # a=1, pet=2..3, cat=4, and=5, a=6, frog=7
    assert selection.tokens == ("embedding:pet[1]", "frog")
    assert selection.prompt_tokens[1:3] == ("embedding:pet[1]", "embedding:pet[2]")


def test_bad_subjects_fail_before_encoding_with_the_token_list():
    clip = tiny_clip("sd1")
    with pytest.raises(ValueError) as e, torch.inference_mode():
        AESelectSubjectTokens().select(clip, "a cat and a frog", "dog")
    assert "subject 'dog' is not in the prompt" in str(e.value) and "1:a 2:cat 3:and 4:a 5:frog" in str(e.value)
    with pytest.raises(ValueError, match="token index 6 is an end or padding token"), torch.inference_mode():
        AESelectSubjectTokens().select(clip, "a cat and a frog", "2, 6")


def test_only_sd_families_are_accepted():
    assert tokenizer_family({"l": []}) == "sd1" and tokenizer_family({"h": []}) == "sd2"
    assert tokenizer_family({"l": [], "g": []}) == "sdxl"
    with pytest.raises(ValueError, match=r"needs an SD1.x, SD2.x or SDXL CLIP; this CLIP has the text encoders "
                                         r"\['g', 'l', 't5xxl'\]"):
        tokenizer_family({"g": [], "l": [], "t5xxl": []})


def test_node_declares_its_interface_with_tooltips():
    inputs = AESelectSubjectTokens.INPUT_TYPES()["required"]
    assert list(inputs) == ["clip", "text", "subjects"]
    assert inputs["clip"][0] == "CLIP" and inputs["text"][0] == inputs["subjects"][0] == "STRING"
    assert inputs["text"][1]["multiline"] and inputs["text"][1]["dynamicPrompts"]
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    assert AESelectSubjectTokens.RETURN_TYPES == ("CONDITIONING", "AE_TOKENS")
    assert len(AESelectSubjectTokens.OUTPUT_TOOLTIPS) == 2 and all(AESelectSubjectTokens.OUTPUT_TOOLTIPS)
    assert AESelectSubjectTokens.CATEGORY == "sampling/attend_and_excite"

"""'Apply Attend-and-Excite' (MODEL -> MODEL) in front of ComfyUI's stock sampler nodes, on tiny real models: the
same latent as the A&E KSampler, nothing changed on the input model, stacking with other patches, interrupt,
clear errors, and what A&E's step numbers count under KSampler (Advanced)."""
import copy

import pytest
import torch

from harness.ae_run import ae_defaults, run_node
from harness.host import import_comfy
from harness.models import make_conditioning, make_model, tiny_controlnet

import_comfy()
import comfy.model_management  # noqa: E402
import comfy.samplers  # noqa: E402
import nodes as comfy_nodes  # noqa: E402
from comfy_execution.utils import CurrentNodeContext  # noqa: E402

from aande_pack.aande_core.selection import COND_KEY, TokenSelection  # noqa: E402
from aande_pack.nodes.declarations.apply_ae import AEApplyAttendAndExcite  # noqa: E402

SUBJECTS = TokenSelection(token_indices=(2, 5), tokens=("cat", "frog"), prompt_indices=(1, 2, 3, 4, 5),
                          prompt_tokens=("a", "cat", "and", "a", "frog"), context_len=77, prompt="a cat and a frog")
FAST = dict(thresholds="0:0.5", max_refinement_steps=2)


@pytest.fixture(scope="module")
def sd1():
    return make_model("sd1", seed=0, sharpen=6.5)


def conds():
    """A positive carrying the selection (as 'Select Subject Tokens' outputs it) and a plain negative."""
    pos = [[c, {**extra, COND_KEY: SUBJECTS}] for c, extra in make_conditioning("sd1", 1)]
    return pos, make_conditioning("sd1", 2)


def latent(batch=1, side=32):
    return {"samples": torch.zeros(batch, 4, side, side)}


def apply(model, **ae):
    with torch.inference_mode():
        return AEApplyAttendAndExcite().apply(model, **ae_defaults(**ae))


def ksampler(model, positive, negative, steps=4, seed=0, sampler_name="euler", scheduler="normal", latent_image=None):
    with torch.inference_mode():
        (out,) = comfy_nodes.KSampler().sample(model, seed, steps, 7.5, sampler_name, scheduler, positive, negative,
                                               latent_image or latent())
    return out["samples"]


def snapshot(model):
    return ({k: v.clone() for k, v in model.model.state_dict().items()}, copy.deepcopy(model.model_options),
            {n: p for n, p in model.model.named_parameters()}, copy.deepcopy(model.wrappers))


def assert_unchanged(model, snap):
    weights, options, params, wrappers = snap
    for k, v in model.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert model.model_options == options and model.wrappers == wrappers
    for n, p in model.model.named_parameters():
        assert p is params[n] and p.is_inference(), n


def test_the_stock_ksampler_with_the_patch_gives_the_ae_ksamplers_latent(sd1):
    pos, neg = conds()
    patched, slot = apply(sd1, **FAST)
    via_patch = ksampler(patched, pos, neg)
    via_node, record = run_node(sd1, pos, neg, latent(), **FAST)
    assert torch.equal(via_patch, via_node)
    published = slot.record()
    assert [s.step for s in published.steps] == [s.step for s in record.steps] == [0, 1]
    torch.testing.assert_close(published.steps[0].subject_maps, record.steps[0].subject_maps, rtol=0, atol=0)
    assert not torch.equal(via_patch, ksampler(sd1, pos, neg))  # and it is not plain sampling


def test_the_input_model_and_a_plain_ksampler_are_left_as_they_were(sd1):
    pos, neg = conds()
    before = ksampler(sd1, pos, neg)
    snap = snapshot(sd1)
    patched, _ = apply(sd1, **FAST)
    ksampler(patched, pos, neg)
    assert_unchanged(sd1, snap)
    assert torch.equal(ksampler(sd1, pos, neg), before)


def test_it_stacks_with_comfyuis_freeu_and_self_attention_guidance(sd1):
    from comfy_extras.nodes_freelunch import FreeU_V2
    from comfy_extras.nodes_sag import SelfAttentionGuidance
    pos, neg = conds()
    with torch.inference_mode():
        (freeu,) = FreeU_V2().patch(sd1, 1.3, 1.4, 0.9, 0.2)
        sag = SelfAttentionGuidance.execute(sd1, 0.5, 2.0).result[0]
    for other in (freeu, sag):
        alone = ksampler(other, pos, neg)
        ae_after, slot_after = apply(other, **FAST)       # A&E on top of the other patch
        both = ksampler(ae_after, pos, neg)
        assert torch.isfinite(both).all() and not torch.equal(both, alone)
        assert not torch.equal(both, ksampler(apply(sd1, **FAST)[0], pos, neg))  # the other patch still acts
        assert [s.step for s in slot_after.record().steps] == [0, 1]
        (reordered,) = (FreeU_V2().patch(apply(sd1, **FAST)[0], 1.3, 1.4, 0.9, 0.2) if other is freeu else
                        SelfAttentionGuidance.execute(apply(sd1, **FAST)[0], 0.5, 2.0).result)
        torch.testing.assert_close(ksampler(reordered, pos, neg), both)  # the order of the patches does not matter


def test_it_composes_with_a_lora_and_a_controlnet(sd1):
    pos, neg = conds()
    lora = sd1.clone()
    key = next(k for k in sd1.model.state_dict() if k.endswith("attn2.to_q.weight"))
    with torch.inference_mode():
        lora.add_patches({key: (torch.randn_like(sd1.model.state_dict()[key]) * 0.01,)}, 1.0)
    control = tiny_controlnet().copy().set_cond_hint(torch.rand(1, 3, 256, 256), 1.0)
    with_control = [[c, {**extra, "control": control, "control_apply_to_uncond": False}] for c, extra in pos]
    patched, slot = apply(lora, **FAST)
    out = ksampler(patched, with_control, neg)
    plain_lora = ksampler(lora, with_control, neg)
    assert torch.isfinite(out).all() and not torch.equal(out, plain_lora)
    assert not torch.allclose(slot.record().steps[0].subject_maps, apply_and_record(sd1, pos, neg).steps[0].subject_maps)


def apply_and_record(model, pos, neg):
    patched, slot = apply(model, **FAST)
    ksampler(patched, pos, neg)
    return slot.record()


def test_interrupt_stops_and_leaves_nothing_behind(sd1):
    pos, neg = conds()
    snap = snapshot(sd1)
    patched, _ = apply(sd1, thresholds="0:1.0")
    forwards = []

    def count(module, args, output):
        forwards.append(1)
        if len(forwards) == 3:  # inside the refinement loop of step 0
            comfy.model_management.interrupt_current_processing(True)

    handle = sd1.model.diffusion_model.input_blocks[0][0].register_forward_hook(count)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            ksampler(patched, pos, neg, steps=10)
    finally:
        handle.remove()
        comfy.model_management.interrupt_current_processing(False)
    assert len(forwards) == 3
    assert_unchanged(sd1, snap)


def test_clear_errors(sd1):
    pos, neg = conds()
    patched, _ = apply(sd1, **FAST)
    with pytest.raises(ValueError, match="no subject tokens: encode the positive prompt with 'Select Subject Tokens'"):
        ksampler(patched, make_conditioning("sd1", 1), neg)
    with pytest.raises(ValueError, match="A&E needs a single positive conditioning, got 2"):
        ksampler(patched, comfy_nodes.ConditioningCombine().combine(pos, pos)[0], neg)

    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    class DiTPatcher:  # what a ModelPatcher of a DiT model answers
        def get_model_object(self, name):
            with torch.inference_mode():
                return MMDiT(input_size=None, patch_size=2, in_channels=4, depth=1, num_patches=64,
                             adm_in_channels=None, context_embedder_config=None, pos_embed_max_size=8,
                             operations=comfy.ops.disable_weight_init)

    with pytest.raises(ValueError, match="needs a UNet with text cross-attention"):
        apply(DiTPatcher(), **FAST)


def test_ksampler_advanced_counts_ae_steps_within_its_own_run(sd1):
    """A&E's step numbers count the steps the patched sampler node runs: KSampler (Advanced) with 10 steps from
    0 to 5 runs 5, so A&E alters 3 of them (25 of 50, scaled) and refines at 0, 1, 2 (0, 10, 20 of 50, scaled);
    a second KSampler (Advanced) on the unpatched model finishes the schedule."""
    pos, neg = conds()
    patched, slot = apply(sd1)
    with torch.inference_mode():
        (half,) = comfy_nodes.KSamplerAdvanced().sample(patched, "enable", 0, 10, 7.5, "euler", "normal", pos, neg,
                                                        latent(), 0, 5, "enable")
        (rest,) = comfy_nodes.KSamplerAdvanced().sample(sd1, "disable", 0, 10, 7.5, "euler", "normal", pos, neg, half,
                                                        5, 10000, "disable")
    record = slot.record()
    assert record.total_steps == 5 and [s.step for s in record.steps] == [0, 1, 2]
    assert all(any(s.refinement_iterations) or s.final_loss is not None for s in record.steps)
    assert torch.isfinite(rest["samples"]).all()
    with torch.inference_mode():
        (second_half,) = comfy_nodes.KSamplerAdvanced().sample(patched, "disable", 0, 10, 7.5, "euler", "normal", pos,
                                                               neg, half, 5, 10000, "disable")
    assert slot.record().total_steps == 5 and [s.step for s in slot.record().steps] == [0, 1, 2]
    assert not torch.equal(second_half["samples"], rest["samples"])  # the patch alters the second run's first steps


def test_sampler_custom_advanced_with_the_patched_model(sd1):
    pos, neg = conds()
    patched, slot = apply(sd1, **FAST)
    guider = comfy.samplers.CFGGuider(patched)
    guider.set_conds(pos, neg)
    guider.set_cfg(7.5)
    sigmas = comfy.samplers.calculate_sigmas(sd1.get_model_object("model_sampling"), "karras", 4)
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("dpmpp_2m"), sigmas, seed=0)
    assert torch.isfinite(out).all() and [s.step for s in slot.record().steps] == [0, 1]


def test_two_sampler_nodes_on_one_patched_model_keep_their_own_records(sd1):
    pos, neg = conds()
    patched, slot = apply(sd1, **FAST)
    with CurrentNodeContext("prompt-a", "3"):
        ksampler(patched, pos, neg, steps=4)
    with CurrentNodeContext("prompt-a", "7"):
        ksampler(patched, pos, neg, steps=6)
    with pytest.raises(ValueError, match="sampler nodes 3, 7 all ran with this attention output"):
        slot.record()
    with CurrentNodeContext("prompt-b", "7"):
        ksampler(patched, pos, neg, steps=6)
    assert slot.record().total_steps == 6


def test_node_declaration():
    from aande_pack.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from aande_pack.nodes.declarations.inputs import ae_inputs
    assert NODE_CLASS_MAPPINGS["AEApplyAttendAndExcite"] is AEApplyAttendAndExcite
    assert NODE_DISPLAY_NAME_MAPPINGS["AEApplyAttendAndExcite"] == "Apply Attend-and-Excite"
    inputs = AEApplyAttendAndExcite.INPUT_TYPES()["required"]
    assert list(inputs) == ["model", *ae_inputs()]
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    assert AEApplyAttendAndExcite.RETURN_TYPES == ("MODEL", "AE_ATTENTION")

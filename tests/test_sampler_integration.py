"""The A&E sampler inside ComfyUI's sampling, on tiny real ComfyUI models."""
import copy

import pytest
import torch

from harness.ae_run import run_node
from harness.faults import nan_in_first_gradient
from harness.host import import_comfy
from harness.models import make_conditioning, make_model

comfy = import_comfy()
import comfy.model_management  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
import comfy.utils  # noqa: E402

from aande_pack.aande_core.selection import COND_KEY, TokenSelection  # noqa: E402
from aande_pack.nodes.compat import cross_attention_layers  # noqa: E402
from aande_pack.nodes.engine.observer import RunObserver  # noqa: E402


@pytest.fixture(scope="module")
def sd1():
    return make_model("sd1", seed=0, sharpen=6.5)


def latent(b=1, h=32, w=32):
    return {"samples": torch.zeros(b, 4, h, w)}


def conds(kind="sd1", n_chunks=1):
    return make_conditioning(kind, 1, n_chunks), make_conditioning(kind, 2, n_chunks)


FAST = dict(thresholds="", max_iter_to_alter=25)  # A&E on the first half of the steps, no refinement


def snapshot(model):
    return ({k: v.clone() for k, v in model.model.state_dict().items()}, copy.deepcopy(model.model_options),
            {n: p for n, p in model.model.named_parameters()})


def assert_unchanged(model, snap):
    weights, options, params = snap
    for k, v in model.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert model.model_options == options
    for n, p in model.model.named_parameters():
        assert p is params[n] and p.is_inference(), n


# the sampler and scheduler sweeps read 8x8 maps at latent/2 of a 16x16 latent: a quarter of the cost
SWEEP = dict(FAST, attention_res="latent/2")


@pytest.fixture(scope="module")
def sweep_model():
    """attn2.to_q x2: on this model every A&E update of the sweep's 4-step runs is a descent step at the paper's
    scale factor 20 (with x6.5 the gradient at step 0 is so steep that a step of 20 overshoots)."""
    return make_model("sd1", seed=0, sharpen=2.0)


class StepProbe(RunObserver):
    """Per A&E step: the latent before and after the update, the loss of both (one extra eager pass at the same
    sigma), and the input of the sampler's next model call, read at the UNet's first layer (for an eps model
    that input is x / sqrt(sigma^2 + 1), i.e. the variance-preserving latent itself)."""

    def __init__(self, unet):
        self.steps, self.model_inputs, self._waiting = {}, {}, None
        self.handle = unet.input_blocks[0][0].register_forward_pre_hook(self._forward)

    def _forward(self, module, args):
        if self._waiting is not None and not torch.is_grad_enabled():
            self.model_inputs[self._waiting] = args[0][:1].detach().clone()  # the cond row of the CFG batch
            self._waiting = None

    def step_finished(self, run, step, z, sigma, outcome):
        after = run.gradient_pass.eager(outcome.z, sigma)
        self.steps[step] = dict(z=z.clone(), z_after=outcome.z.detach().clone(), loss=float(outcome.first.loss[0]),
                                loss_after=float(after.loss[0]))
        self._waiting = step


def sweep_run(model, sampler_name, observer=None, **overrides):
    from aande_pack.nodes.declarations.inputs import settings_from
    from aande_pack.nodes.engine.patch import ksample
    from harness.ae_run import ae_defaults
    settings = settings_from(ae_defaults(token_indices="2,5", **{**SWEEP, **overrides}))
    extra = {"observer": observer} if observer is not None else {}
    with torch.inference_mode():
        out, record = ksample(model, 0, 4, 7.5, sampler_name, "normal", *conds(), latent(h=16, w=16), 1.0, settings,
                              **extra)
    return out["samples"], record


@pytest.mark.parametrize("sampler_name", comfy.samplers.KSampler.SAMPLERS)
def test_every_sampler_takes_the_ae_update_and_it_lowers_the_loss(sweep_model, sampler_name):
    """Per sampler, against the same seed with A&E off: the output differs; at each A&E step the sampler's model
    call receives the updated latent, and the update lowers the subjects' loss at that step's sigma."""
    probe = StepProbe(sweep_model.model.diffusion_model)
    try:
        on, record = sweep_run(sweep_model, sampler_name, probe)
    finally:
        probe.handle.remove()
    off, standard = sweep_run(sweep_model, sampler_name, attend_and_excite=False)
    assert torch.isfinite(on).all() and (on - off).norm() / off.norm() > 1e-3
    assert [s.step for s in record.steps] == [s.step for s in standard.steps] == sorted(probe.steps) == [0, 1]
    for step, seen in probe.steps.items():
        torch.testing.assert_close(probe.model_inputs[step], seen["z_after"], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(seen["z_after"], seen["z"])
        assert seen["loss_after"] < seen["loss"], (step, seen["loss"], seen["loss_after"])
    assert all(s.updated == (True,) for s in record.steps)


def test_uni_pc_keeps_only_part_of_a_later_update(sweep_model, capsys):
    """uni_pc's corrector rebuilds the latent from a copy taken before the model call, so from its second step on
    an A&E update acts only through that call's prediction. Measured: how much the step-1 update moves the
    output, per unit of update, next to ddim, which starts each step from its (updated) latent."""
    moved = {}
    for name in ("ddim", "uni_pc", "uni_pc_bh2"):
        probe = StepProbe(sweep_model.model.diffusion_model)
        try:
            both, _ = sweep_run(sweep_model, name, probe)
        finally:
            probe.handle.remove()
        first_only, record = sweep_run(sweep_model, name, max_iter_to_alter=13)  # 4 steps: step 0 altered only
        assert [s.step for s in record.steps] == [0]
        update = probe.steps[1]["z_after"] - probe.steps[1]["z"]
        moved[name] = float((both - first_only).norm() / update.norm())
    with capsys.disabled():
        print(f"\noutput moved per unit of the step-1 A&E update: "
              + ", ".join(f"{k} {v:.2f}" for k, v in moved.items()))
    for name in ("uni_pc", "uni_pc_bh2"):
        assert 0 < moved[name] < 0.75 * moved["ddim"], moved


@pytest.mark.parametrize("scheduler", comfy.samplers.KSampler.SCHEDULERS)
def test_every_scheduler_runs_ae_steps(sd1, scheduler):
    pos, neg = conds()
    out, record = run_node(sd1, pos, neg, latent(h=16, w=16), steps=4, scheduler=scheduler, token_indices="2,5",
                           **SWEEP)
    assert torch.isfinite(out).all() and len(record.steps) == 2


def test_ae_changes_the_latent_and_lowers_the_loss(sd1):
    pos, neg = conds()
    plain, rec_off = run_node(sd1, pos, neg, latent(), steps=10, token_indices="2,5", attend_and_excite=False)
    ae, rec_on = run_node(sd1, pos, neg, latent(), steps=10, token_indices="2,5", max_refinement_steps=3)
    assert not torch.allclose(plain, ae)
    assert [s.step for s in rec_on.steps] == [0, 1, 2, 3, 4] == [s.step for s in rec_off.steps]
    assert not rec_off.attend_and_excite and rec_on.attend_and_excite
    assert all(s.updated == (False,) for s in rec_off.steps) and all(s.final_loss is None for s in rec_off.steps)
    assert all(s.updated == (True,) for s in rec_on.steps)  # random weights: the loss never reaches 0
    # the gradient step lowers the subjects' loss relative to standard sampling
    assert rec_on.steps[-1].loss.mean() < rec_off.steps[-1].loss.mean()
    # refinement at step 0 (threshold 0.05, at most 3 iterations): it ran, it lowered the loss, and it stopped
    # by the reference's rule: every iteration's loss but the last is above 1 - 0.05; the last is below it,
    # unless the iterations ran out
    losses = rec_on.steps[0].refinement_losses[0]
    assert 1 <= len(losses) <= 3 and rec_on.steps[0].final_loss[0] < rec_on.steps[0].loss[0]
    assert all(v > 0.95 for v in losses[:-1]) and (losses[-1] <= 0.95 or len(losses) == 3)


def test_record_only_is_standard_sampling(sd1):
    pos, neg = conds()
    with torch.inference_mode():
        noise = comfy.sample.prepare_noise(latent()["samples"], 0)
        plain = comfy.sample.sample(sd1, noise, 6, 7.5, "euler", "normal", pos, neg, latent()["samples"], seed=0)
    recorded, record = run_node(sd1, pos, neg, latent(), steps=6, token_indices="2,5", attend_and_excite=False)
    torch.testing.assert_close(recorded, plain, rtol=0, atol=1e-6)
    assert len(record.steps) == 3 and record.steps[0].subject_maps.shape == (1, 2, 8, 8)


def test_batch_of_four_equals_four_single_runs():
    """Each sample of a batch gets its own loss and refinement, from one shared gradient forward.

    In float32, CPU kernels differ slightly between batch sizes and A&E's large steps on a random model
    amplify that (the latent reaches ~1e3); in float64 (the attention probabilities stay float32) the batch
    and the single runs agree to rounding.
    """
    from aande_pack.nodes.declarations.ae_sampler import AESamplerNode
    from harness.ae_run import ae_defaults
    model = make_model("sd1", seed=0, sharpen=6.5, dtype=torch.float64)
    pos, neg = ([[c.double(), e] for c, e in cond] for cond in conds())
    noise = torch.randn(4, 4, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 4)

    def run(n):
        sampler, slot = AESamplerNode().wrap(comfy.samplers.sampler_object("euler"), **ae_defaults(
            token_indices="2,5", thresholds="0:0.3", max_refinement_steps=3))
        with torch.inference_mode():
            out = comfy.sample.sample_custom(model, n, 7.5, sampler, sigmas, pos, neg, torch.zeros_like(n), seed=0,
                                             disable_pbar=True)
        return out, slot.record()

    batch, brec = run(noise)
    assert brec.steps[0].loss.shape == (4,)
    for i in range(4):
        single, srec = run(noise[i:i + 1])
        assert (batch[i] - single[0]).norm() / single.norm() < 1e-3
        assert len(brec.steps) == len(srec.steps) == 2
        first_b, first_s = brec.steps[0], srec.steps[0]
        assert abs(first_b.loss[i] - first_s.loss[0]) < 1e-6
        assert abs(first_b.final_loss[i] - first_s.final_loss[0]) < 1e-5
        assert len(first_b.refinement_losses[i]) == len(first_s.refinement_losses[0]) > 0
        torch.testing.assert_close(torch.tensor(first_b.refinement_losses[i]),
                                   torch.tensor(first_s.refinement_losses[0]), rtol=0, atol=1e-5)
        assert abs(brec.steps[1].loss[i] - srec.steps[1].loss[0]) < 1e-4


def test_denoise_cfg1_long_prompt(sd1):
    pos, neg = conds(n_chunks=2)
    out, record = run_node(sd1, pos, neg, latent(), steps=8, denoise=0.6, cfg=1.0, token_indices="2,80", **FAST)
    assert torch.isfinite(out).all() and len(record.steps) == 4
    assert record.token_indices == (2, 80)


@pytest.mark.parametrize("kind", ["sd2v", "sdxl"])
def test_sd2_v_prediction_and_sdxl(kind):
    model = make_model(kind, seed=0, sharpen=6.5)
    pos, neg = conds(kind)
    out, record = run_node(model, pos, neg, latent(), steps=4, token_indices="2,5", thresholds="0:0.05",
                           max_refinement_steps=2, normalize_eot="off")
    assert torch.isfinite(out).all() and len(record.steps) == 2
    assert record.steps[0].subject_maps.shape == (1, 2, 8, 8)


def test_sd2_auto_normalize_eot_needs_prompt_tokens():
    model = make_model("sd2v", seed=0)
    pos, neg = conds("sd2v")
    with pytest.raises(ValueError, match="normalize_eot needs the prompt"):
        run_node(model, pos, neg, latent(), steps=2, token_indices="2,5")
    sel = TokenSelection(token_indices=(2, 5), prompt_indices=tuple(range(1, 8)), context_len=77)
    out, record = run_node(model, carrying(pos, sel), neg, latent(), steps=2, **FAST)
    assert record.prompt_indices == tuple(range(1, 8))
    assert record.steps[0].token_maps.shape == (1, 7, 8, 8)
    # normalize_eot: the softmax runs over the prompt's 7 tokens only, so their maps sum to 1 per pixel
    torch.testing.assert_close(record.steps[0].token_maps.sum(1), torch.ones(1, 8, 8))


def test_non_square_latent_maps_are_not_transposed(sd1):
    pos, neg = conds()
    _, record = run_node(sd1, pos, neg, latent(h=32, w=48), steps=2, token_indices="2,5", **FAST)
    assert record.steps[0].subject_maps.shape == (1, 2, 8, 12)


def test_model_loaded_by_plain_ksampler_and_lora_are_left_unchanged():
    model = make_model("sd1", seed=3, sharpen=6.5)
    key = next(k for k in model.model.state_dict() if k.endswith("attn2.to_q.weight"))
    w = model.model.state_dict()[key]
    lora = model.clone()
    with torch.inference_mode():
        lora.add_patches({key: (torch.randn_like(w) * 0.01,)}, 1.0)  # a plain weight-diff patch
    pos, neg = conds()
    noise = comfy.sample.prepare_noise(latent()["samples"], 0)
    for m in (model, lora):
        with torch.inference_mode():
            before = comfy.sample.sample(m, noise, 4, 7.5, "euler", "normal", pos, neg, latent()["samples"], seed=0)
        snap = snapshot(m)
        out, record = run_node(m, pos, neg, latent(), steps=4, token_indices="2,5")
        assert torch.isfinite(out).all() and record.steps
        with torch.inference_mode():
            after = comfy.sample.sample(m, noise, 4, 7.5, "euler", "normal", pos, neg, latent()["samples"], seed=0)
        assert torch.equal(before, after)
        assert_unchanged(m, snap)


def test_interrupt_inside_refinement_stops_and_leaves_nothing_behind(sd1):
    pos, neg = conds()
    snap = snapshot(sd1)
    forwards = []

    def count(module, args, output):
        forwards.append(torch.is_grad_enabled())
        if len(forwards) == 3:  # inside the refinement loop of step 0
            comfy.model_management.interrupt_current_processing(True)

    handle = sd1.model.diffusion_model.input_blocks[0][0].register_forward_hook(count)  # the UNet's first conv
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_node(sd1, pos, neg, latent(), steps=10, token_indices="2,5", thresholds="0:1.0")
    finally:
        handle.remove()
        comfy.model_management.interrupt_current_processing(False)
    assert len(forwards) == 3  # stopped before the next UNet pass
    assert_unchanged(sd1, snap)


def test_progress_bar_moves_every_step_and_previews_work(sd1, monkeypatch):
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod
    monkeypatch.setattr(latent_preview.args, "preview_method", LatentPreviewMethod.Latent2RGB)
    events = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append(
        (value, total, preview)))
    try:
        run_node(sd1, *conds(), latent(), steps=5, token_indices="2,5", **FAST)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert [e[0] for e in events] == [1, 2, 3, 4, 5] and all(e[1] == 5 for e in events)
    assert all(e[2] is not None for e in events)  # a preview image each step


def test_composes_with_an_ipadapter_style_attn2_replace_patch():
    """Another pack's attn2 replace patch on the capture blocks keeps running, and A&E still reads the
    probabilities of the text keys: a patch that only adds to the output of the *last* capture layer cannot
    change what the gradient pass reads, so step 0's maps match the unpatched run, while the image differs."""
    import comfy.ldm.modules.attention as attn
    model = make_model("sd1", seed=0, sharpen=6.5)
    keys = [k for k, f in cross_attention_layers(model.model.diffusion_model) if f == 4]
    calls = []

    def ip_patch(q, k, v, extra_options):
        calls.append(torch.is_grad_enabled())
        out = attn.optimized_attention(q, k, v, extra_options["n_heads"])
        return out + 0.5 * out.std()

    patched = model.clone()
    patched.set_model_attn2_replace(ip_patch, *keys[-1])
    pos, neg = conds()
    out_plain, rec_plain = run_node(model, pos, neg, latent(), steps=4, token_indices="2,5", **FAST)
    out_ip, rec_ip = run_node(patched, pos, neg, latent(), steps=4, token_indices="2,5", **FAST)
    torch.testing.assert_close(rec_ip.steps[0].subject_maps, rec_plain.steps[0].subject_maps)
    assert calls and not torch.allclose(out_ip, out_plain)
    assert patched.model_options["transformer_options"]["patches_replace"]["attn2"][keys[-1]] is ip_patch


@pytest.mark.parametrize("indices,message", [
    ("2,77", "outside the text context"), ("0,5", "start token"), ("", "no subject tokens"),
    ("a,b", "must be integers"), ("2,2", "twice"),
])
def test_bad_token_indices(sd1, indices, message):
    snap = snapshot(sd1)
    with pytest.raises(ValueError, match=message):
        run_node(sd1, *conds(), latent(), steps=2, token_indices=indices)
    assert_unchanged(sd1, snap)


def test_index_on_end_or_padding_token_refused(sd1):
    pos, neg = conds()
    sel = TokenSelection(token_indices=(2, 9), prompt_indices=(1, 2, 3, 4), prompt_tokens=("a", "cat", "and", "dog"),
                         context_len=77)
    with pytest.raises(ValueError, match="token index 9 is an end or padding token, not a word of the prompt; the "
                                         "prompt's tokens are: 1:a 2:cat 3:and 4:dog"):
        run_node(sd1, carrying(pos, sel), neg, latent(), steps=2)


def test_latent_too_small_for_attention_resolution(sd1):
    with pytest.raises(ValueError, match="gives 1x1 attention maps at latent/4, too small"):
        run_node(sd1, *conds(), latent(h=4, w=4), steps=2, token_indices="2,5")


def test_resolution_without_cross_attention():
    model = make_model("sdxl", seed=0)  # cross-attention at latent/2 and latent/4 only, as SDXL
    with pytest.raises(ValueError, match="no cross-attention at latent/8 of the latent; it has some at latent/2, latent/4"):
        run_node(model, *conds("sdxl"), latent(), steps=2, token_indices="2,5", attention_res="latent/8")


def test_model_without_unet_cross_attention():
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    with torch.inference_mode():
        dit = MMDiT(input_size=None, patch_size=2, in_channels=4, depth=1, num_patches=64, adm_in_channels=None,
                    context_embedder_config=None, pos_embed_max_size=8, operations=comfy.ops.disable_weight_init)
    with pytest.raises(ValueError, match="needs a UNet with text cross-attention"):
        cross_attention_layers(dit)


def test_gradient_pass_never_uses_the_host_attention_backend(sd1, monkeypatch):
    """Some attention backends (e.g. sage attention) have no backward. In the gradient pass every attention runs
    through A&E's differentiable implementation; ComfyUI's own backend serves only the ordinary CFG forwards."""
    import comfy.ldm.modules.attention as attn
    host_attention, grad_calls, calls = attn.optimized_attention, [], []

    def no_backward(q, k, v, *args, **kwargs):
        (grad_calls if torch.is_grad_enabled() else calls).append(1)
        return host_attention(q, k, v, *args, **kwargs).detach()

    monkeypatch.setattr(attn, "optimized_attention", no_backward)
    out, record = run_node(sd1, *conds(), latent(), steps=4, token_indices="2,5", thresholds="0:0.5",
                           max_refinement_steps=2)
    assert calls and not grad_calls
    assert torch.isfinite(out).all() and record.steps[0].final_loss[0] < record.steps[0].loss[0]


def test_ae_sampler_node_in_a_custom_guider_run(sd1):
    """What SamplerCustomAdvanced does: a guider samples with the SAMPLER of 'A&E Sampler'."""
    from aande_pack.nodes.declarations.ae_sampler import AESamplerNode
    from harness.ae_run import ae_defaults
    sampler, slot = AESamplerNode().wrap(comfy.samplers.sampler_object("euler_ancestral"),
                                         **ae_defaults(token_indices="2,5", **FAST))
    guider = comfy.samplers.CFGGuider(sd1)
    guider.set_conds(*conds())
    guider.set_cfg(5.0)
    sigmas = comfy.samplers.calculate_sigmas(sd1.get_model_object("model_sampling"), "karras", 6)
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, seed=0)
    assert torch.isfinite(out).all()
    record = slot.record()
    assert [s.step for s in record.steps] == [0, 1, 2] and all(s.updated == (True,) for s in record.steps)


def test_a_non_k_diffusion_sampler_is_refused():
    from aande_pack.nodes.declarations.ae_sampler import AESamplerNode
    from harness.ae_run import ae_defaults

    class Other(comfy.samplers.Sampler):
        def sample(self, *args, **kwargs):
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match="wraps k-diffusion samplers"):
        AESamplerNode().wrap(Other(), **ae_defaults(token_indices="2,5"))


def carrying(cond, selection):
    """A conditioning that carries `selection`, as the output of 'Select Subject Tokens' does."""
    return [[c, {**extra, COND_KEY: selection}] for c, extra in cond]


SMALL_CAT = TokenSelection(token_indices=(3, 6), tokens=("cat", "frog"), prompt_indices=tuple(range(1, 8)),
                           prompt_tokens=("a", "small", "cat", "and", "a", "frog", "."), context_len=77,
                           prompt="a small cat and a frog.")


def test_selection_carried_in_the_positive_conditioning_is_used(sd1):
    pos, neg = conds()
    _, record = run_node(sd1, carrying(pos, SMALL_CAT), neg, latent(), steps=2, **FAST)
    assert record.token_indices == (3, 6) and record.subject_labels == ("cat@3", "frog@6")
    assert record.prompt_labels[:3] == ("a@1", "small@2", "cat@3")


def test_typed_indices_override_the_carried_subjects_and_keep_its_prompt(sd1):
    pos, neg = conds()
    _, record = run_node(sd1, carrying(pos, SMALL_CAT), neg, latent(), steps=2, token_indices="2, 6", **FAST)
    assert record.token_indices == (2, 6) and record.subject_labels == ("small@2", "frog@6")
    assert len(record.prompt_labels) == 7
    with pytest.raises(ValueError, match="token index 8 is an end or padding token.*1:a 2:small 3:cat"):
        run_node(sd1, carrying(pos, SMALL_CAT), neg, latent(), steps=2, token_indices="8", **FAST)


def test_deprecated_subject_tokens_input_still_runs_and_is_checked(sd1):
    """Workflows saved with the AE_TOKENS link keep running: the selection is used when the conditioning carries
    none, checked like a carried one, and refused when it names another prompt than the carried selection."""
    pos, neg = conds()
    _, legacy = run_node(sd1, pos, neg, latent(), steps=2, subject_tokens=SMALL_CAT, **FAST)
    _, carried = run_node(sd1, carrying(pos, SMALL_CAT), neg, latent(), steps=2, **FAST)
    assert legacy.token_indices == carried.token_indices == (3, 6)
    torch.testing.assert_close(legacy.steps[-1].subject_maps, carried.steps[-1].subject_maps, rtol=0, atol=0)
    other = TokenSelection(token_indices=(2, 5), context_len=77, prompt="another prompt")
    with pytest.raises(ValueError, match="subject_tokens input \\(deprecated\\) was selected on the prompt "
                                         "'another prompt'"):
        run_node(sd1, carrying(pos, SMALL_CAT), neg, latent(), steps=2, subject_tokens=other, **FAST)


def test_a_selection_of_another_context_length_is_refused(sd1):
    pos, neg = conds(n_chunks=2)
    with pytest.raises(ValueError, match="selected on a 77-token prompt .* but the positive conditioning has 154"):
        run_node(sd1, carrying(pos, SMALL_CAT), neg, latent(), steps=2, **FAST)


def test_composes_with_a_controlnet(sd1):
    """The ControlNet runs inside the gradient pass too (its weights are inference tensors as well, and ComfyUI
    adds its outputs to the skip connections in place); it must take part and stay untouched."""
    from harness.models import tiny_controlnet
    control = tiny_controlnet().copy().set_cond_hint(torch.rand(1, 3, 256, 256), 1.0)
    net = control.control_model
    params = {n: p for n, p in net.named_parameters()}
    weights = {n: p.clone() for n, p in params.items()}
    pos, neg = conds()
    with_control = [[pos[0][0], {**pos[0][1], "control": control, "control_apply_to_uncond": False}]]
    out, record = run_node(sd1, with_control, neg, latent(), steps=4, token_indices="2,5", thresholds="0:0.5",
                           max_refinement_steps=2)
    _, plain = run_node(sd1, pos, neg, latent(), steps=4, token_indices="2,5", thresholds="0:0.5",
                        max_refinement_steps=2)
    assert torch.isfinite(out).all() and len(record.steps) == 2
    assert not torch.allclose(record.steps[0].subject_maps, plain.steps[0].subject_maps)
    for n, p in net.named_parameters():
        assert p is params[n] and p.is_inference() and torch.equal(p, weights[n]), n


def test_non_finite_gradient_skips_that_samples_update_with_one_warning(sd1, caplog):
    """A NaN in sample 1's gradient at the first gradient pass: its update is skipped, the other sample is updated,
    the output stays finite, the record says so, and the warning (read once, when the run ends) names the step
    and the sample."""
    pos, neg = conds()
    with caplog.at_level("WARNING", logger="attend_and_excite"), nan_in_first_gradient(sample=1):
        out, record = run_node(sd1, pos, neg, latent(b=2, h=16, w=16), steps=4, token_indices="2,5", **FAST)
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert warnings == ["A&E step 0: non-finite gradient for sample(s) [1]; their update was skipped"]
    assert torch.isfinite(out).all() and len(record.steps) == 2
    assert record.steps[0].updated == (True, False) and record.steps[0].skipped == (False, True)
    assert record.steps[1].updated == (True, True) and record.steps[1].skipped == (False, False)

"""The memory-saving gradient pass (nodes/engine/recompute.py): residual blocks and transformer feed-forwards
recompute their activations in the backward. It must give the normal pass's loss and gradient, put every block back, and be chosen by itself
when ComfyUI's free VRAM is below the pass's estimate, with an INFO line; 'off' and 'on' force it."""
import logging

import torch

from harness.ae_run import run_node
from harness.models import make_conditioning, make_model

from aande_pack.nodes import compat
from aande_pack.nodes.engine import gradient_pass as gp
from aande_pack.nodes.engine.inference_weights import WeightAliases
from aande_pack.nodes.engine.recompute import recomputed_activations


def test_recomputed_blocks_give_the_same_gradient_and_are_put_back():
    model = make_model("sd1", seed=0, sharpen=6.5)
    unet = model.model.diffusion_model
    blocks, feed_forwards = compat.residual_blocks(unet), compat.feed_forwards(unet)
    assert blocks and feed_forwards and all("forward" not in m.__dict__ for m in blocks + feed_forwards)
    out = {}
    for recompute in (False, True):
        pos, neg = make_conditioning("sd1", 1), make_conditioning("sd1", 2)
        _, record = run_node(model, pos, neg, {"samples": torch.zeros(1, 4, 32, 32)}, steps=4, token_indices="2,5",
                             thresholds="", memory_saving="on" if recompute else "off")
        out[recompute] = record
    for a, b in zip(out[False].steps, out[True].steps):
        torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[False].steps[-1].subject_maps, out[True].steps[-1].subject_maps, rtol=1e-4,
                               atol=1e-6)
    assert all("forward" not in m.__dict__ for m in blocks + feed_forwards)
    # inside the context the modules recompute: a layer whose input its backward needs (a ResBlock's first
    # GroupNorm, a feed-forward's gated projection) runs again during the backward
    calls = {"resblock": [], "feed_forward": []}
    ff = feed_forwards[0]
    handles = [blocks[0].in_layers[0].register_forward_hook(lambda *a: calls["resblock"].append(1)),
               ff.net[0].proj.register_forward_hook(lambda *a: calls["feed_forward"].append(1))]
    try:
        with WeightAliases(unet).swapped(), recomputed_activations(unet), torch.inference_mode(False), \
                torch.enable_grad():
            x = torch.randn(1, blocks[0].channels, 32, 32, requires_grad=True)
            emb = torch.randn(1, blocks[0].emb_layers[-1].in_features)
            blocks[0](x, emb).sum().backward()
            tokens = torch.randn(1, 16, ff.net[0].proj.in_features, requires_grad=True)
            ff(tokens).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"resblock": [1, 1], "feed_forward": [1, 1]}
    assert all("forward" not in m.__dict__ for m in blocks + feed_forwards)


def test_under_freeu_the_memory_saving_pass_gives_the_normal_pass_result():
    """FreeU writes to the hidden state in place, so these passes copy saved tensors before writes
    (saved_copies.py) while the recomputed blocks keep their own saved tensors: the two must not get in each
    other's way."""
    from comfy_extras.nodes_freelunch import FreeU_V2
    with torch.inference_mode():
        (freeu,) = FreeU_V2().patch(make_model("sd1", seed=0, sharpen=6.5), 1.3, 1.4, 0.9, 0.2)
    out = {}
    for mode in ("off", "on"):
        pos, neg = make_conditioning("sd1", 1), make_conditioning("sd1", 2)
        out[mode] = run_node(freeu, pos, neg, {"samples": torch.zeros(1, 4, 32, 32)}, steps=4, token_indices="2,5",
                             thresholds="0:0.5", max_refinement_steps=2, memory_saving=mode)
    (latent_off, record_off), (latent_on, record_on) = out["off"], out["on"]
    assert sum(record_on.steps[0].refinement_iterations) > 0  # refinement passes ran too
    for a, b in zip(record_off.steps, record_on.steps):
        torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(latent_on, latent_off, rtol=1e-4, atol=1e-5)


def test_auto_picks_the_memory_saving_pass_when_vram_is_short(monkeypatch, caplog):
    pass_ = gp.GradientPass.__new__(gp.GradientPass)
    pass_.model = make_model("sd1", seed=0).model
    cuda = torch.device("cuda")
    monkeypatch.setattr(compat, "free_vram", lambda device: 2 ** 30)
    monkeypatch.setattr(compat, "pass_memory_estimate", lambda model, shape: 3 * 2 ** 30)
    with caplog.at_level(logging.INFO, logger="attend_and_excite"):
        assert pass_._needs_memory_saving("auto", (1, 4, 128, 128), cuda)
    assert any("1.0 GiB of VRAM free and the normal pass needs about 3.0 GiB" in r.getMessage() for r in caplog.records)
    assert not pass_._needs_memory_saving("off", (1, 4, 128, 128), cuda)
    monkeypatch.setattr(compat, "free_vram", lambda device: 8 * 2 ** 30)
    assert not pass_._needs_memory_saving("auto", (1, 4, 128, 128), cuda)
    assert pass_._needs_memory_saving("on", (1, 4, 128, 128), cuda)
    assert not pass_._needs_memory_saving("auto", (1, 4, 128, 128), torch.device("cpu"))  # no VRAM to save


def test_the_estimate_scales_comfyuis_own_forward_estimate():
    model = make_model("sd1", seed=0).model
    shape = (2, 4, 64, 64)
    assert compat.pass_memory_estimate(model, shape) == 15 * model.memory_required(list(shape))

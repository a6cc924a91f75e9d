"""The tiny models of the harness are real, deterministic ComfyUI models with SD's attention layout."""
import comfy.model_base
import comfy.sample
import pytest
import torch

from harness.models import KINDS, TINY_KINDS, make_conditioning, make_model

LATENT = (1, 4, 32, 32)


def sample(model, kind, seed, steps=10):
    latent = torch.zeros(LATENT)
    with torch.inference_mode():
        noise = comfy.sample.prepare_noise(latent, seed)
        return comfy.sample.sample(model, noise, steps, 5.0, "euler", "normal", make_conditioning(kind, 1),
                                   make_conditioning(kind, 2), latent, seed=seed, disable_pbar=True)


@pytest.mark.parametrize("kind", [pytest.param("sd1", marks=pytest.mark.compat), "sd2v", "sdxl"])
def test_sampling_is_finite_and_deterministic(kind):
    model = make_model(kind, seed=0)
    first = sample(model, kind, seed=7)
    assert first.shape == LATENT
    assert torch.isfinite(first).all()
    assert torch.equal(first, sample(make_model(kind, seed=0), kind, seed=7))
    assert not torch.equal(first, sample(model, kind, seed=8))


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_weights_are_inference_tensors_from_the_seed(kind):
    a, b, c = make_model(kind, seed=0), make_model(kind, seed=0), make_model(kind, seed=1)
    params = dict(a.model.diffusion_model.named_parameters())
    assert params and all(p.is_inference() for p in params.values())
    same = dict(b.model.diffusion_model.named_parameters())
    other = dict(c.model.diffusion_model.named_parameters())
    name = "input_blocks.0.0.weight"
    assert torch.equal(params[name], same[name]) and not torch.equal(params[name], other[name])


@pytest.mark.parametrize("kind,factors", [("sd1", {1, 2, 4}), ("sd2v", {1, 2, 4}), ("sdxl", {2, 4})])
def test_cross_attention_layout(kind, factors):
    """Record the query length of every cross-attention layer of a forward pass on a 32x32 latent."""
    model = make_model(kind)
    seen = {"input": set(), "output": set()}
    hooks = []
    for name, module in model.model.diffusion_model.named_modules():
        if name.endswith("attn2") and name.split("_")[0] in seen:
            assert module.to_k.in_features == KINDS[kind].context_dim
            hooks.append(module.register_forward_hook(
                lambda mod, args, out, part=name.split("_")[0]: seen[part].add(args[0].shape[1])))
    sample(model, kind, seed=0, steps=1)
    for hook in hooks:
        hook.remove()
    expected = {(32 // f) ** 2 for f in factors}  # 8x8 at factor 4, 16x16 at 2, 32x32 at 1
    assert seen == {"input": expected, "output": expected}


def test_v_prediction_kind():
    assert make_model("sd2v").model.model_type == comfy.model_base.ModelType.V_PREDICTION
    assert make_model("sd1").model.model_type == comfy.model_base.ModelType.EPS


def test_sharpen_scales_only_cross_attention_queries():
    plain = dict(make_model("sd1", seed=3).model.diffusion_model.named_parameters())
    sharp = dict(make_model("sd1", seed=3, sharpen=6.5).model.diffusion_model.named_parameters())
    scaled = [n for n in plain if n.endswith("attn2.to_q.weight")]
    assert len(scaled) == 10  # input blocks at 3 levels, the middle block, output blocks 2 per level
    for name in plain:
        factor = 6.5 if name in scaled else 1.0
        torch.testing.assert_close(sharp[name], plain[name] * factor)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_conditioning_shape(kind):
    cond = make_conditioning(kind, seed=4, n_chunks=2)
    tokens, extras = cond[0]
    assert tokens.shape == (1, 154, KINDS[kind].context_dim)
    assert extras["pooled_output"].shape == (1, KINDS[kind].pooled_dim)
    assert torch.equal(tokens, make_conditioning(kind, seed=4, n_chunks=2)[0][0])


def test_bad_kind_names_the_choices():
    with pytest.raises(ValueError, match="sd1"):
        make_model("sd3")

"""aande_core's pieces against independent expectations (numpy/scipy, hand-written tables)."""
import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from aande_pack.aande_core.attention import AttentionAccumulator, softmax_columns, token_probabilities
from aande_pack.aande_core.config import AESettings, parse_thresholds
from aande_pack.aande_core.objective import Objective
from aande_pack.aande_core.smoothing import gaussian_kernel, smooth


def test_kernel_uses_reference_formula_not_textbook():
    x = np.arange(3) - 1.0
    g = np.exp(-((x / (2 * 0.5)) ** 2))          # the reference's exp(-((x - mu) / (2 sigma))^2)
    expected = np.outer(g, g) / np.outer(g, g).sum()
    np.testing.assert_allclose(gaussian_kernel(3, 0.5).numpy(), expected, rtol=1e-6)
    textbook = np.exp(-(x ** 2) / (2 * 0.5 ** 2))
    assert not np.allclose(expected, np.outer(textbook, textbook) / np.outer(textbook, textbook).sum(), atol=1e-3)
    # ... which is a textbook Gaussian of sigma sqrt(2) * 0.5
    tb = np.exp(-(x ** 2) / (2 * (math.sqrt(2) * 0.5) ** 2))
    np.testing.assert_allclose(expected, np.outer(tb, tb) / np.outer(tb, tb).sum(), rtol=1e-6)


@pytest.mark.parametrize("k,sigma,hw", [(3, 0.5, (16, 16)), (5, 1.0, (8, 12))])
def test_smoothing_matches_scipy_mirror_convolution(k, sigma, hw):
    rng = np.random.default_rng(0)
    maps = rng.random((2, 3, *hw)).astype(np.float32)
    kern = gaussian_kernel(k, sigma).numpy()
    expected = np.stack([[scipy.ndimage.correlate(m, kern, mode="mirror") for m in b] for b in maps])
    np.testing.assert_allclose(smooth(torch.from_numpy(maps), torch.from_numpy(kern)).numpy(), expected, atol=1e-6)


def test_smoothing_refuses_maps_smaller_than_kernel():
    with pytest.raises(ValueError, match="too small"):
        smooth(torch.rand(1, 1, 1, 4), gaussian_kernel(3, 0.5))


def test_softmax_columns_sd1_mode_is_positions_1_to_75():
    assert softmax_columns(77) == list(range(1, 76))
    two = softmax_columns(154)
    assert 0 not in two and 77 not in two and 153 not in two and len(two) == 151


def test_softmax_columns_normalize_eot_is_prompt_tokens_only():
    assert softmax_columns(77, (1, 2, 3), normalize_eot=True) == [1, 2, 3]
    with pytest.raises(ValueError, match="Select Subject Tokens"):
        softmax_columns(77, (), normalize_eot=True)


def test_token_probabilities_scale_100_then_softmax():
    rng = np.random.default_rng(1)
    att = rng.random((1, 2, 2, 77)).astype(np.float32) * 0.05
    cols = list(range(1, 76))
    sel = att[..., cols] * 100
    expected = np.exp(sel - sel.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(token_probabilities(torch.from_numpy(att), cols).numpy(), expected, rtol=1e-5)


def test_accumulator_averages_over_heads_and_layers():
    rng = np.random.default_rng(2)
    layers = [rng.random((2, 8, 6, 77)).astype(np.float32) for _ in range(5)]
    acc = AttentionAccumulator()
    for layer in layers:
        acc.add(torch.from_numpy(layer), (2, 3))
    expected = np.concatenate(layers, axis=1).mean(axis=1).reshape(2, 2, 3, 77)
    np.testing.assert_allclose(acc.mean().numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="mixed"):
        acc.add(torch.from_numpy(layers[0]), (3, 2))


def test_loss_is_max_over_subjects_of_one_minus_peak():
    maps = torch.zeros(2, 2, 4, 4)
    maps[0, 0, 1, 1], maps[0, 1, 2, 2] = 0.9, 0.3
    maps[1, 0, 0, 0], maps[1, 1, 3, 3] = 1.2, 0.8
    np.testing.assert_allclose(Objective.loss_from_maps(maps).numpy(), [0.7, 0.2], rtol=1e-6)


def test_objective_gradient_flows_only_through_weakest_subject():
    """loss = max_s(1 - m_s): only the weakest subject's peak pixel moves the loss. Its gradient w.r.t. the
    attention is non-zero at that pixel alone (all of the pixel's text columns, through the softmax), and
    changing the stronger subject's column anywhere leaves the loss as it is."""
    gen = torch.Generator().manual_seed(0)
    attention = torch.rand(1, 4, 4, 77, generator=gen) * 0.01
    attention[0, 1, 2, 3] += 0.05     # subject at index 3: peak at pixel (1, 2), the weaker subject
    attention[0, 3, 0, 5] += 0.08     # subject at index 5: stronger peak at pixel (3, 0)
    attention.requires_grad_(True)
    obj = Objective(subject_indices=(3, 5), context_len=77, smoothing=None)
    result = obj.loss(attention, attention)
    probs = torch.softmax(attention.detach()[..., 1:76] * 100, dim=-1)
    peaks = probs[..., [2, 4]].amax(dim=(1, 2))[0]  # columns of indices 3 and 5 among 1..75
    assert peaks[0] < peaks[1]
    torch.testing.assert_close(result.loss, 1 - peaks[:1])
    grad = result.grad[0]
    touched = (grad.abs().sum(-1) > 0).nonzero().tolist()
    assert touched == [[1, 2]]
    assert grad[1, 2, 3] < 0 and grad[1, 2, [0, 76]].abs().sum() == 0  # start and last index are not softmaxed
    nudged = attention.detach().clone()
    nudged[0, 0, 1, 5] += 0.02  # the stronger subject elsewhere
    torch.testing.assert_close(obj.loss(nudged).loss, result.loss)
    assert result.subject_maps.shape == (1, 2, 4, 4) and result.token_maps.shape == (1, 2, 4, 4)


def test_step_size_matches_numpy_linspace():
    cfg = AESettings()
    expected = 20 * np.sqrt(np.linspace(1.0, 0.5, 50))
    np.testing.assert_allclose([cfg.step_size(i, 50) for i in range(50)], expected, rtol=1e-12)


@pytest.mark.parametrize("steps,alter,refine", [
    (50, 25, {0: 0.05, 10: 0.5, 20: 0.8}),
    (20, 10, {0: 0.05, 4: 0.5, 8: 0.8}),
    (30, 15, {0: 0.05, 6: 0.5, 12: 0.8}),
    (25, 13, {0: 0.05, 5: 0.5, 10: 0.8}),
    (4, 2, {0: 0.5, 1: 0.8}),   # 0 and 10 both land on step 0: the later threshold wins
])
def test_paper_steps_map_to_other_step_counts(steps, alter, refine):
    cfg = AESettings()
    assert cfg.alter_steps(steps) == alter
    assert cfg.refinement_thresholds(steps) == refine


def test_parse_thresholds():
    assert parse_thresholds("0:0.05, 10:0.5,20:0.8") == ((0, 0.05), (10, 0.5), (20, 0.8))
    assert parse_thresholds("  ") == ()
    with pytest.raises(ValueError, match="look like"):
        parse_thresholds("0=0.05")
    with pytest.raises(ValueError, match="twice"):
        parse_thresholds("0:0.1, 0:0.2")
    with pytest.raises(ValueError, match="threshold"):
        AESettings(thresholds=((0, 1.5),))


def test_plan_refines_at_threshold_steps_beyond_max_iter_to_alter():
    """The reference refines at every threshold step; past max_iter_to_alter only the regular update is left out."""
    settings = AESettings(max_iter_to_alter=15)
    plan = settings.plan(50)
    assert sorted(plan) == list(range(15)) + [20]
    assert [plan[i].threshold for i in (0, 10, 20)] == [0.05, 0.5, 0.8]
    assert plan[20].update is False and all(plan[i].update for i in range(15))
    assert plan[14].threshold is None
    assert [plan[i].step_size for i in plan] == [settings.step_size(i, 50) for i in plan]
    assert sorted(AESettings().plan(50)) == list(range(25))  # the paper: every threshold step is altered anyway
    assert AESettings(max_iter_to_alter=0, thresholds=()).plan(50) == {}


def test_auto_settings_are_resolved_for_the_model():
    assert AESettings().resolved(1024).normalize_eot == "on"   # SD2's OpenCLIP-H context
    assert AESettings().resolved(768).normalize_eot == "off"
    assert AESettings().resolved(2048).normalize_eot == "off"  # SDXL
    assert AESettings(normalize_eot="on").resolved(768).normalize_eot == "on"
    assert AESettings().resolved(768).attention_res == "latent/4" and AESettings().attention_factor == 4
    assert AESettings(attention_res="latent/2").resolved(768).attention_factor == 2
    with pytest.raises(ValueError, match="normalize_eot must be one of auto, on, off"):
        AESettings(normalize_eot="yes")
    with pytest.raises(ValueError, match="attention_res must be one of"):
        AESettings(attention_res="latent/3")

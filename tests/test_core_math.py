"""aande_core's pieces against independent expectations (numpy/scipy, hand-written tables)."""
import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from aande_pack.aande_core.attention import AttentionAccumulator, softmax_columns, token_probabilities
from aande_pack.aande_core.config import AEConfig, parse_thresholds
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
    z = torch.randn(1, 4, 2, 2, requires_grad=True)
    logits = torch.zeros(1, 2, 2, 77)
    logits = logits + z.sum(1, keepdim=True).permute(0, 2, 3, 1)[..., :1] * torch.eye(77)[3] * 0.01
    obj = Objective(AEConfig(smooth_attentions=False), subject_positions=(2, 3), context_len=77)
    ev = obj.evaluate(logits, z)
    assert ev.grad is not None and ev.grad.shape == z.shape
    assert ev.subject_maps.shape == (1, 2, 2, 2) and ev.token_maps.shape == (1, 2, 2, 2)


def test_step_size_matches_numpy_linspace():
    cfg = AEConfig()
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
    cfg = AEConfig()
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
        AEConfig(thresholds=((0, 1.5),))

"""The gradient pass: a latent in, A&E's loss and its gradient with respect to that latent out.

One GradientPass serves one sampling run. It owns what the pass needs beside the model: the attention capture
on a copy of the run's model options (the UNet stops after the last layer the loss reads), the aliases that
let autograd through ComfyUI's inference-tensor weights, the positive conditioning already on the device, and
the choice between an eager pass and one replayed from a CUDA graph, with the reason when it stays eager.

Latents are variance-preserving: z = x / sqrt(sigma^2 + sigma_data^2) for the sampler's x (`scale(sigma)`).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import torch

from ...aande_core.objective import Objective, PassResult
from .. import compat
from .attention_capture import AttentionCapture, StopForward
from .graphed_pass import GraphedPass, graph_blocker
from .inference_weights import WeightAliases

log = logging.getLogger("attend_and_excite")


class GradientPass:
    def __init__(self, model, positive: dict, model_options: dict, objective: Objective, keys, map_hw, device):
        """model: the BaseModel being sampled; positive: its processed positive cond; keys, map_hw: the capture
        layers and their map size (unet_layers.layers_at)."""
        self.model, self.objective = model, objective
        self.sigma_data = compat.sigma_data(model)
        self.capture = AttentionCapture(keys, map_hw, grad=True)
        controls = compat.control_networks(positive)
        all_keys = [key for key, _ in compat.cross_attention_layers(model.diffusion_model)]
        self.options = self.capture.patch(model_options, all_keys, separate_skips=bool(controls))
        self.weights = WeightAliases(model.diffusion_model, *controls)
        self.positive = [compat.cond_on_device(positive, device)]
        self.passes = 0
        self.eager_reason = graph_blocker(device, model_options, positive, controls, model)
        self._graph = None if self.eager_reason else GraphedPass(self.eager)
        if self.eager_reason:
            log.info("A&E: gradient pass runs eagerly, not from a CUDA graph: %s", self.eager_reason)

    @property
    def replays(self) -> int:
        """Passes replayed from the CUDA graph so far."""
        return self._graph.replays if self._graph is not None else 0

    def scale(self, sigma: torch.Tensor, ndim: int) -> torch.Tensor:
        """sqrt(sigma^2 + sigma_data^2), shaped to broadcast over a latent of `ndim` dimensions: x = z * scale."""
        return (sigma ** 2 + self.sigma_data ** 2).sqrt().view(-1, *([1] * (ndim - 1)))

    @contextmanager
    def active(self):
        """The state every pass of one A&E step runs in: weight aliases swapped in, autograd on, outside
        inference mode (ComfyUI samples under torch.inference_mode()). Everything is put back on exit."""
        with self.weights.swapped(), torch.inference_mode(False), torch.enable_grad():
            yield

    def __call__(self, z: torch.Tensor, sigma: torch.Tensor) -> PassResult:
        """One counted pass, from the CUDA graph where the run allows it; stops first if the user interrupted."""
        compat.throw_if_interrupted()
        self.passes += 1
        return self._graph(z, sigma) if self._graph is not None else self.eager(z, sigma)

    def eager(self, z: torch.Tensor, sigma: torch.Tensor) -> PassResult:
        """The pass without the graph (and not counted): truncated forward on the positive prompt, loss and its
        gradient w.r.t. z. Must run inside `active()`."""
        z = z.detach().requires_grad_(True)
        sigma = sigma.detach().clone()  # a tensor made under inference mode cannot be saved for backward
        self.capture.begin()
        try:
            compat.calc_cond_batch(self.model, [self.positive], z * self.scale(sigma.to(z.dtype), z.dim()), sigma,
                                   self.options)
        except StopForward:
            pass
        return self.objective.loss(self.capture.end(), z)

    def release(self) -> None:
        """Free the CUDA graph and its memory pool (no pass is left in the run)."""
        if self._graph is not None:
            self._graph.release()

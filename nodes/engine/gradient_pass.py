"""The gradient pass: a latent in, A&E's loss and its gradient with respect to that latent out.

One GradientPass serves one sampling run. It owns what the pass needs beside the model: the attention capture
on a copy of the run's model options (the UNet stops after the last layer the loss reads), the aliases that
let autograd through ComfyUI's inference-tensor weights, the positive conditioning already on the device, and
the choice between an eager pass and one replayed from a CUDA graph, with the reason when it stays eager.

Latents are variance-preserving: z = x / sqrt(sigma^2 + sigma_data^2) for the sampler's x (`scale(sigma)`).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager, nullcontext

import torch

from ...aande_core.objective import Objective, PassResult
from .. import compat
from .attention_capture import AttentionCapture, StopForward
from .compiled_pass import compiled_pass, describe, triton_available
from .graphed_pass import GraphedPass, graph_blocker
from .inference_weights import WeightAliases
from .nhwc_norm import NHWCGroupNorms
from .recompute import recomputed_activations
from .saved_copies import saved_tensors_copied_before_write

log = logging.getLogger("attend_and_excite")

CHANNELS_LAST_SWITCH = "AANDE_CHANNELS_LAST"  # "0": the CUDA-graph pass keeps NCHW (for comparisons)
NHWC_NORM_SWITCH = "AANDE_NHWC_NORM"  # "0": the channels-last pass keeps PyTorch's GroupNorm, not the compiled NHWC one
RECOMPUTING = "the memory-saving pass recomputes activations"  # why such a pass stays eager


def nhwc_norm_enabled() -> bool:
    """Whether channels-last passes use the compiled NHWC GroupNorm (the default; AANDE_NHWC_NORM=0 turns it off)."""
    return os.environ.get(NHWC_NORM_SWITCH, "1") != "0"


class GradientPass:
    def __init__(self, model, positive: dict, model_options: dict, objective: Objective, keys, map_hw, device,
                 latent_shape=(), memory_saving: str = "auto", compile_pass: bool = False):
        """model: the BaseModel being sampled; positive: its processed positive cond; keys, map_hw: the capture
        layers and their map size (unet_layers.layers_at); memory_saving: "on", "off" or "auto" (on when ComfyUI's
        free VRAM is below the pass's estimated need for a latent of `latent_shape`; recompute.py); compile_pass: the
        CUDA-graph pass is compiled first (compiled_pass.py), where Triton is installed."""
        self.model, self.objective = model, objective
        self.memory_saving_mode = memory_saving
        self.memory_saving = self._needs_memory_saving(memory_saving, latent_shape, device)
        self.sigma_data = compat.sigma_data(model)
        self.capture = AttentionCapture(keys, map_hw, grad=True)
        controls = compat.control_networks(positive)
        all_keys = [key for key, _ in compat.cross_attention_layers(model.diffusion_model)]
        self.options = self.capture.patch(model_options, all_keys, separate_skips=bool(controls))
        self.eager_reason = RECOMPUTING if self.memory_saving else \
            graph_blocker(device, model_options, positive, controls, model)
        # channels-last kernels and activations where the weights stay put all run (inference_weights.py)
        self.channels_last = self.eager_reason is None and os.environ.get(CHANNELS_LAST_SWITCH, "1") != "0"
        self.weights = WeightAliases(model.diffusion_model, *controls, channels_last=self.channels_last)
        # the whole pass compiled (compiled_pass.py), or else each GroupNorm, in the run's first (eager) pass
        compiling = compile_pass and self.eager_reason is None and triton_available()
        self.nhwc_norms = NHWCGroupNorms(model.diffusion_model, compile_each=not compiling) \
            if self.channels_last and nhwc_norm_enabled() else None
        self.positive = [compat.cond_on_device(positive, device)]
        # other nodes' block patches are written for inference and may change tensors autograd saved (FreeU
        # scales part of its input in place): with them, a saved tensor is copied before a write (saved_copies.py)
        self._mutation_safe = compat.has_block_patches(model_options)
        self.passes = 0
        self._graph = None if self.eager_reason else \
            GraphedPass(self.eager, self._compiled if compiling else None, uncompiled=self._compile_each_norm)
        if self.eager_reason:
            log.info("A&E: gradient pass runs eagerly, not from a CUDA graph: %s%s", self.eager_reason,
                     " (compile_pass compiles only a CUDA-graph pass)" if compile_pass else "")

    def _needs_memory_saving(self, mode: str, latent_shape, device) -> bool:
        if mode != "auto":
            return mode == "on"
        if device.type != "cuda" or not latent_shape:
            return False
        needed, free = compat.pass_memory_estimate(self.model, latent_shape), compat.free_vram(device)
        if needed <= free:
            return False
        log.info("A&E: the gradient pass recomputes activations to save memory: ComfyUI reports %.1f GiB of VRAM "
                 "free and the normal pass needs about %.1f GiB (memory_saving 'off' forces the normal pass)",
                 free / 2 ** 30, needed / 2 ** 30)
        return True

    @property
    def compiled(self) -> bool:
        """Whether the CUDA graph replays the compiled pass (compiled_pass.py)."""
        return self._graph is not None and self._graph.compiled

    @property
    def replays(self) -> int:
        """Passes replayed from the CUDA graph so far."""
        return self._graph.replays if self._graph is not None else 0

    def scale(self, sigma: torch.Tensor, ndim: int) -> torch.Tensor:
        """sqrt(sigma^2 + sigma_data^2), shaped to broadcast over a latent of `ndim` dimensions: x = z * scale."""
        return (sigma ** 2 + self.sigma_data ** 2).sqrt().view(-1, *([1] * (ndim - 1)))

    @contextmanager
    def active(self):
        """The state every pass of one A&E step runs in: weight aliases (and NHWC GroupNorms) swapped in, autograd
        on, outside inference mode (ComfyUI samples under torch.inference_mode()). Everything is put back on exit."""
        with self.weights.swapped(), self.nhwc_norms.swapped() if self.nhwc_norms else nullcontext(), \
                torch.inference_mode(False), torch.enable_grad():
            yield

    def __call__(self, z: torch.Tensor, sigma: torch.Tensor) -> PassResult:
        """One counted pass, from the CUDA graph where the run allows it; stops first if the user interrupted."""
        compat.throw_if_interrupted()
        self.passes += 1
        try:
            return self._graph(z, sigma) if self._graph is not None else self.eager(z, sigma)
        except torch.cuda.OutOfMemoryError:
            if self.memory_saving or self.memory_saving_mode == "off":
                raise
        log.info("A&E: the gradient pass ran out of VRAM; it recomputes activations from now on")
        self.release()
        self._graph, self.memory_saving = None, True
        self.eager_reason = RECOMPUTING
        return self.eager(z, sigma)

    def eager(self, z: torch.Tensor, sigma: torch.Tensor) -> PassResult:
        """The pass without the graph (and not counted): truncated forward on the positive prompt, loss and its
        gradient w.r.t. z. Must run inside `active()`."""
        z = z.detach().requires_grad_(True)
        sigma = sigma.detach().clone()  # a tensor made under inference mode cannot be saved for backward
        with saved_tensors_copied_before_write() if self._mutation_safe else nullcontext(), \
                recomputed_activations(self.model.diffusion_model) if self.memory_saving else nullcontext():
            self.capture.begin()
            x = z * self.scale(sigma.to(z.dtype), z.dim())
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            try:
                compat.calc_cond_batch(self.model, [self.positive], x, sigma, self.options)
            except StopForward:
                pass
            return self.objective.loss(self.capture.end(), z)

    def _compiled(self, z: torch.Tensor, sigma: torch.Tensor, expected: PassResult):
        """The compiled pass of this run (compiled_pass.py), checked to give `expected` at z, sigma."""
        structure, tensors = describe(self.model, positive=self.positive, objective=self.objective, options=self.options,
                                      capture=(self.capture.keys, self.capture.map_hw),
                                      switches=(self.nhwc_norms is not None, self._mutation_safe))
        return compiled_pass(self.eager, z, sigma, expected, structure, tensors, channels_last=self.channels_last)

    def _compile_each_norm(self) -> None:
        """When the run gives up its compiled pass (GraphedPass), its GroupNorms are compiled one by one from then
        on, as in a run without compile_pass: else the pass that replaces it would be slower than that run's."""
        if self.nhwc_norms is not None:
            self.nhwc_norms.compile_each = True

    def release(self) -> None:
        """Free the CUDA graph, its memory pool and the weights' channels-last copies (no pass is left in the
        run); the pass holds itself through its graph, so this must not wait for the garbage collector."""
        if self._graph is not None:
            self._graph.release()
        self.weights.release()

"""The A&E sampler: any KSAMPLER, with Attend-and-Excite applied at the start of its first steps.

Both nodes ("A&E KSampler" and "A&E Sampler") run through AESampler. It wraps the base sampler's
function so that the first model call of each A&E step first moves the sampler's own latent x (in place)
by the A&E gradient step on z = x / sqrt(sigma^2 + sigma_data^2), then evaluates the ordinary CFG
prediction from the updated latent. Step boundaries come from the sampler's per-step callback, so
multi-evaluation samplers (heun, dpm_2, ...) get one A&E update per step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import torch

from ..aande_core.config import AEConfig
from ..aande_core.excite import excite_step
from ..aande_core.objective import Objective
from ..aande_core.record import AttentionRecord, StepRecord
from ..aande_core.selection import TokenSelection
from .attention_capture import AttentionCapture, StopForward
from .graphed_pass import GraphedEvaluation, graph_blocker
from .inference_weights import WeightAliases
from .token_source import resolve_selection
from .unet_layers import cross_attention_layers, layers_at

log = logging.getLogger("attend_and_excite")


@dataclass
class AESettings:
    config: AEConfig
    optimize: bool = True                    # False: standard sampling that only records attention
    attention_res: str = "auto"
    normalize_eot: str = "auto"              # "auto" (on for SD2), "on", "off"
    selection: TokenSelection | None = None  # from an AE_TOKENS input
    indices: tuple[int, ...] = ()            # from a "2,5" string


class AESampler(comfy.samplers.Sampler):
    def __init__(self, base, settings: AESettings, record: AttentionRecord | None = None):
        if not isinstance(base, comfy.samplers.KSAMPLER):
            raise ValueError(f"A&E wraps k-diffusion samplers (KSAMPLER); got {type(base).__name__}. "
                             "Use a sampler from KSamplerSelect or the A&E KSampler node")
        self.base, self.settings = base, settings
        self.record = record if record is not None else AttentionRecord([], [], [], [], settings.optimize)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        run = _Run(model_wrap, sigmas, extra_args, noise, self.settings, self.record)
        if not self.settings.optimize:
            extra_args = dict(extra_args, model_options=run.capture.patch(extra_args["model_options"]))
        base_fn = self.base.sampler_function

        def sampler_function(model_k, x, sigmas, extra_args=None, callback=None, disable=None, **kwargs):
            def step_callback(info):
                run.step_done(info["i"])
                if callback is not None:
                    callback(info)
            return base_fn(_AEDenoiser(model_k, run), x, sigmas, extra_args=extra_args, callback=step_callback,
                           disable=disable, **kwargs)

        inner = comfy.samplers.KSAMPLER(sampler_function, self.base.extra_options, self.base.inpaint_options)
        try:
            return inner.sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                                disable_pbar)
        finally:
            run.finish()


class _AEDenoiser:
    """Stands in for the sampler's model: A&E happens before the first evaluation of each A&E step."""

    def __init__(self, inner, run):
        self.inner, self.run = inner, run

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, sigma, **kwargs):
        if not self.run.pending():
            return self.inner(x, sigma, **kwargs)
        return self.run.at_step(x, sigma, lambda: self.inner(x, sigma, **kwargs))


class _Run:
    """State of one sampling call: validated inputs, the capture, the step counter and the record."""

    def __init__(self, guider, sigmas, extra_args, noise, settings: AESettings, record: AttentionRecord):
        self.settings, self.config, self.record = settings, settings.config, record
        self.model = guider.inner_model
        self.diffusion_model = self.model.diffusion_model
        sampling = self.model.model_sampling
        if not isinstance(sampling, comfy.model_sampling.EPS):
            raise ValueError("Attend-and-Excite supports eps- and v-prediction models (SD1.x, SD2.x, SDXL); "
                             f"this model samples with {type(sampling).__name__}")
        self.sigma_data = float(getattr(sampling, "sigma_data", 1.0))
        positive = guider.conds.get("positive") if getattr(guider, "conds", None) else None
        if not positive:
            raise ValueError("A&E needs positive conditioning (the prompt whose subjects it excites)")
        if len(positive) != 1:
            raise ValueError(f"A&E needs a single positive conditioning, got {len(positive)} (Conditioning "
                             "Combine or areas); excite one prompt at a time")
        cross = positive[0].get("cross_attn")
        if cross is None:
            raise ValueError("the positive conditioning has no text embedding (cross_attn)")
        context_len = cross.shape[1]
        selection = resolve_selection(positive[0], cross, settings.selection, settings.indices)
        # auto: on for SD2's OpenCLIP-H context (1024 wide), as the reference does for SD2.1
        normalize = {"on": True, "off": False}.get(settings.normalize_eot, cross.shape[-1] == 1024)
        self.config = replace(self.config, normalize_eot=normalize)
        self.objective = Objective(self.config, selection.positions, context_len, selection.prompt_positions)
        record_positions = selection.prompt_positions or selection.positions
        self.total_steps = len(sigmas) - 1
        self.alter_steps = self.config.alter_steps(self.total_steps)
        self.thresholds = self.config.refinement_thresholds(self.total_steps)
        kernel = self.config.kernel_size if self.config.smooth_attentions else None
        keys, map_hw = layers_at(self.diffusion_model, settings.attention_res, tuple(noise.shape[-2:]), kernel)
        self.capture = AttentionCapture(keys, map_hw, grad=settings.optimize)
        if settings.optimize:
            all_keys = [key for key, _ in cross_attention_layers(self.diffusion_model)]
            controls = _control_models(positive[0])
            self.grad_options = self.capture.patch(extra_args["model_options"], all_keys, separate_skips=bool(controls))
            self.weights = WeightAliases(self.diffusion_model, *controls)
            self.grad_positive = [_inputs_on(positive[0], noise.device)]
            why = graph_blocker(noise.device, extra_args["model_options"], positive[0], controls, [self.model],
                                getattr(self.model, "current_patcher", None))
            self.gradient_pass = self._evaluate if why else GraphedEvaluation(self._evaluate)
            if why:
                log.info("A&E: gradient pass runs eagerly, not from a CUDA graph: %s", why)
        record.subject_positions = list(selection.positions)
        record.subject_labels = selection.labels()
        record.prompt_positions = list(record_positions)
        record.prompt_labels = selection.labels_of(record_positions)
        record.optimized = settings.optimize
        record.total_steps = self.total_steps
        record.clear()
        self.step = 0
        self._pending = True
        self.skipped: list[tuple[int, torch.Tensor]] = []  # per A&E step, on the device until the run ends

    def pending(self) -> bool:
        return self._pending and self.step < self.alter_steps

    def step_done(self, i: int):
        self.step = i + 1
        self._pending = True
        if self.step >= self.alter_steps:
            self._release_graph()

    def _release_graph(self):
        """Free the graph's memory pool once no gradient pass is left (end of the A&E phase or of the run)."""
        if isinstance(getattr(self, "gradient_pass", None), GraphedEvaluation):
            self.record.graph_replays = self.gradient_pass.replays
            self.gradient_pass.release()

    def at_step(self, x, sigma, evaluate_model):
        self._pending = False
        if self.settings.optimize:
            self._excite(x, sigma)
            return evaluate_model()
        self.capture.begin()
        out = evaluate_model()
        ev = self.objective.evaluate(self.capture.end())
        self._record(sigma, ev, ev.loss, [[] for _ in range(x.shape[0])], updated=False)
        return out

    def _excite(self, x, sigma):
        i = self.step
        with self.weights.swapped(), torch.inference_mode(False), torch.enable_grad():
            sigma = sigma.clone()  # tensors made under inference mode cannot be saved for backward
            scale = (sigma.to(x.dtype) ** 2 + self.sigma_data ** 2).sqrt().view(-1, *([1] * (x.dim() - 1)))
            outcome = excite_step(x.detach().clone() / scale, lambda z: self._gradient_pass(z, scale, sigma),
                                  self.config.step_size(i, self.total_steps), self.thresholds.get(i),
                                  self.config.max_refinement_steps)
            new_x = (outcome.z * scale).detach()
        self.skipped.append((i, outcome.skipped))
        with torch.no_grad():
            x.copy_(new_x)
        self._record(sigma, outcome.first, outcome.final_loss, outcome.refinement_losses, updated=True)

    def _gradient_pass(self, z, scale, sigma):
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.record.gradient_passes += 1
        return self.gradient_pass(z, scale, sigma)

    def _evaluate(self, z, scale, sigma):
        """Truncated forward on the positive prompt, loss and gradient w.r.t. z (eager, or under capture)."""
        z = z.detach().requires_grad_(True)
        self.capture.begin()
        try:
            comfy.samplers.calc_cond_batch(self.model, [self.grad_positive], z * scale, sigma, self.grad_options)
        except StopForward:
            pass
        return self.objective.evaluate(self.capture.end(), z)

    def _record(self, sigma, first, final_loss, refinement_losses, updated):
        """Kept on the device until the run ends: a copy to the CPU here would stall the GPU every step."""
        self.record.steps.append(StepRecord(
            step=self.step, sigma=sigma.flatten()[0], token_maps=first.token_maps, subject_maps=first.subject_maps,
            loss=first.loss, refinement_losses=refinement_losses, final_loss=final_loss, updated=updated))

    def finish(self):
        """Move the record to the CPU (float32) and report skipped updates, once, also when sampling was
        interrupted. Reading the skip flags per step would stall the GPU at every A&E step."""
        self._release_graph()
        if self.skipped:
            flags = torch.stack([mask for _, mask in self.skipped]).cpu()
            for (step, _), row in zip(self.skipped, flags):
                if row.any():
                    log.warning("A&E step %d: non-finite gradient for sample(s) %s; their update was skipped", step,
                                torch.nonzero(row).flatten().tolist())
        for s in self.record.steps:
            s.sigma = float(s.sigma)
            s.token_maps, s.subject_maps = s.token_maps.float().cpu(), s.subject_maps.float().cpu()
            s.loss, s.final_loss = s.loss.float().cpu(), s.final_loss.float().cpu()


def _inputs_on(cond: dict, device) -> dict:
    """The cond with its model inputs (text embedding, SDXL's vector...) already on the device. ComfyUI keeps
    them on the CPU and copies them in every forward: a host transfer per gradient pass, which a CUDA graph
    cannot hold either."""
    inputs = {k: c._copy_with(c.cond.to(device)) if isinstance(getattr(c, "cond", None), torch.Tensor) else c
              for k, c in cond["model_conds"].items()}
    return dict(cond, model_conds=inputs)


def _control_models(cond: dict) -> list[torch.nn.Module]:
    """The networks of the cond's ControlNet / T2I-Adapter chain: the gradient pass runs them too."""
    out, control = [], cond.get("control")
    while control is not None:
        out += [m for m in (getattr(control, "control_model", None), getattr(control, "t2i_model", None))
                if isinstance(m, torch.nn.Module)]
        control = getattr(control, "previous_controlnet", None)
    return out

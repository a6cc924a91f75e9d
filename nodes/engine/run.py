"""One sampling run with A&E: its validated inputs, its plan, the step state, and its record.

The sampler wrapper (sampler.py) tells the run when a step begins (`pending`, `at_step`) and ends (`step_done`).
At the first model call of each A&E step the run moves the sampler's own latent x in place by the A&E step on
z = x / sqrt(sigma^2 + sigma_data^2) (the gradient pass does the model work), hands the outcome to the record
builder, and lets the ordinary CFG evaluation proceed from the updated latent. With A&E off it only records the
positive prompt's attention inside that CFG evaluation.
"""
from __future__ import annotations

import logging

import torch

from ...aande_core.config import AESettings
from ...aande_core.excite import excite_step
from ...aande_core.objective import Objective
from ...aande_core.record import AttentionRecord, RecordBuilder
from ...aande_core.selection import TokenSelection
from .. import compat
from .attention_capture import AttentionCapture
from .gradient_pass import GradientPass
from .observer import RunObserver
from .subjects import run_selection
from .unet_layers import layers_at

log = logging.getLogger("attend_and_excite")


def single_positive(guider) -> dict:
    """The one processed positive cond of a guider, with a clear error for none or several."""
    positive = compat.guider_positive(guider)
    if not positive:
        raise ValueError("A&E needs positive conditioning (the prompt whose subjects it excites)")
    if len(positive) != 1:
        raise ValueError(f"A&E needs a single positive conditioning, got {len(positive)} (Conditioning Combine or "
                         "areas); excite one prompt at a time")
    if compat.text_embedding(positive[0]) is None:
        raise ValueError("the positive conditioning has no text embedding (cross_attn) for the UNet's "
                         "cross-attention, which Attend-and-Excite needs")
    return positive[0]


class Run:
    def __init__(self, guider, sigmas, model_options: dict, latent: torch.Tensor, settings: AESettings,
                 observer: RunObserver, legacy_selection: TokenSelection | None = None):
        self.observer = observer
        self.model = compat.guider_model(guider)
        if not compat.is_eps_family(self.model):
            raise ValueError("Attend-and-Excite supports eps- and v-prediction models (SD1.x, SD2.x, SDXL); this "
                             f"model samples with {type(self.model.model_sampling).__name__}")
        positive = single_positive(guider)
        embedding = compat.text_embedding(positive)
        selection = run_selection(positive, embedding, settings.token_indices, legacy_selection)
        self.settings = settings = settings.resolved(int(embedding.shape[-1]))
        smoothing = (settings.kernel_size, settings.sigma) if settings.smooth_attentions else None
        self.objective = Objective(selection.token_indices, int(embedding.shape[1]), selection.prompt_indices,
                                   settings.normalize_eot == "on", smoothing)
        self.total_steps = len(sigmas) - 1
        self.plan = settings.plan(self.total_steps)
        keys, map_hw = layers_at(self.model.diffusion_model, settings.attention_res, settings.attention_factor,
                                 tuple(latent.shape[-2:]), settings.kernel_size if smoothing else None)
        record_indices = selection.prompt_indices or selection.token_indices
        self.record = RecordBuilder(selection.labels(), selection.token_indices, selection.labels_of(record_indices),
                                    record_indices, settings.attend_and_excite, self.total_steps)
        self.gradient_pass = self.recorder = None
        if settings.attend_and_excite:
            self.gradient_pass = GradientPass(self.model, positive, model_options, self.objective, keys, map_hw,
                                              latent.device, tuple(latent.shape), settings.memory_saving,
                                              settings.compile_pass)
        else:
            self.recorder = AttentionCapture(keys, map_hw, grad=False)
        self.step = 0
        self._pending = True
        self._last_step = max(self.plan, default=-1)

    def model_options(self, model_options: dict) -> dict:
        """The model options the sampler's own model calls use: with A&E off, the attention recorder added."""
        return self.recorder.patch(model_options) if self.recorder is not None else model_options

    def pending(self) -> bool:
        """Whether the next model call is the first of an A&E step."""
        return self._pending and self.step in self.plan

    def step_done(self, i: int) -> None:
        self.step = i + 1
        self._pending = True
        if self.step > self._last_step and self.gradient_pass is not None:
            self.gradient_pass.release()

    def at_step(self, x: torch.Tensor, sigma: torch.Tensor, evaluate_model):
        """The first model call of an A&E step: update x in place (A&E on), then the ordinary evaluation."""
        self._pending = False
        if self.gradient_pass is None:
            self.recorder.begin()
            with self.observer.phase("cfg"):
                out = evaluate_model()
            self.record.add_standard_step(self.step, sigma, self.objective.loss(self.recorder.end()))
            return out
        with self.observer.phase("excite"):
            self._excite(x, sigma)
        with self.observer.phase("cfg"):
            return evaluate_model()

    def _excite(self, x: torch.Tensor, sigma: torch.Tensor) -> None:
        step, gradient_pass = self.step, self.gradient_pass
        with gradient_pass.active():
            sigma = sigma.detach().clone()
            scale = gradient_pass.scale(sigma.to(x.dtype), x.dim())
            z = x.detach().clone() / scale
            self.observer.step_started(self, step, z, sigma)

            def one_pass(latent):
                with self.observer.phase("gradient pass"):
                    return gradient_pass(latent, sigma)

            outcome = excite_step(z, one_pass, self.plan[step], self.settings.max_refinement_steps)
            self.observer.step_finished(self, step, z, sigma, outcome)
            new_x = (outcome.z * scale).detach()
        with torch.no_grad():
            x.copy_(new_x)
        self.record.add_step(step, sigma, outcome)

    def finish(self) -> AttentionRecord:
        """The run's record (one host copy), also after an interrupt; warns once about skipped updates."""
        with self.observer.phase("finish"):
            passes = replays = 0
            compiled = False
            if self.gradient_pass is not None:
                self.gradient_pass.release()
                passes, replays = self.gradient_pass.passes, self.gradient_pass.replays
                compiled = self.gradient_pass.compiled
            for step, samples in self.record.skipped_updates():
                log.warning("A&E step %d: non-finite gradient for sample(s) %s; their update was skipped", step, samples)
            return self.record.finish(passes, replays, compiled)

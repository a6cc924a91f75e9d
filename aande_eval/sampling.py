"""One batch of the grid as images: the prompt encoded by "Select Subject Tokens", each seed's own noise (the
noise a KSampler draws for that seed and a one-image latent, so a seed's image does not depend on the batch it
is in), and sampling as the stock KSampler samples, on the model as it is (standard) or on the A&E model patch."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..aande_core.config import AESettings
from ..aande_core.record import AttentionRecord
from ..nodes import compat
from ..nodes.declarations.select_tokens import AESelectSubjectTokens
from ..nodes.engine.patch import attend_and_excite_model
from ..nodes.engine.record_slot import RecordSlot
from .grid import Batch
from .prompts import Prompt


@dataclass(frozen=True)
class SamplingSettings:
    size: int = 512              # image side in pixels (the latent is 8x smaller)
    steps: int = 50
    cfg: float = 7.5
    sampler: str = "ddim"
    scheduler: str = "ddim_uniform"
    negative: str = ""           # the paper samples with an empty unconditional prompt


class Sampler:
    """Samples batches with one loaded model; keeps each prompt's conditioning for its other batches."""

    def __init__(self, model, clip, vae, sampling: SamplingSettings, ae: AESettings):
        self.model, self.clip, self.vae, self.sampling, self.ae = model, clip, vae, sampling, ae
        self._conds: dict[str, tuple] = {}

    def conditioning(self, prompt: Prompt):
        if prompt.text not in self._conds:
            with torch.inference_mode():
                positive, _ = AESelectSubjectTokens().select(self.clip, prompt.text, prompt.subjects)
                negative = compat.encode_prompt(self.clip, self.sampling.negative)
            self._conds[prompt.text] = (positive, negative)
        return self._conds[prompt.text]

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, AttentionRecord | None]:
        """(images (B, H, W, 3) float in 0..1 on the CPU, the A&E record or None for standard sampling)."""
        s = self.sampling
        positive, negative = self.conditioning(batch.prompt)
        one = torch.zeros(1, 4, s.size // 8, s.size // 8)
        noise = torch.cat([compat.seed_noise(one, seed) for seed in batch.seeds])
        model, slot = self.model, None
        if batch.method == "ae":
            slot = RecordSlot()
            model = attend_and_excite_model(self.model, self.ae, slot)
        with torch.inference_mode():
            samples = compat.sample_with_noise(model, noise, s.steps, s.cfg, s.sampler, s.scheduler, positive,
                                               negative, torch.zeros_like(noise))
            images = self.vae.decode(samples).float().cpu().clamp(0, 1)
        return images.reshape(-1, *images.shape[-3:]), slot.record() if slot is not None else None

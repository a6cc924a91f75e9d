"""The toy model's VAE: a fixed, invertible map between the world's 32x32 RGB images and a 4x32x32 latent.

Why no learned VAE: the world's images are small enough to diffuse in pixel space, and a fixed map keeps the
judge's reading of an image exact. The latent holds RGB in [-1, 1], less a fixed centre, divided by SD1.5's
latent scale, so that ComfyUI's process_latent_in (x 0.18215) hands the UNet RGB - centre, plus a zero fourth
channel; decoding inverts that and repeats each pixel 8x8, so ComfyUI's 8x latent-to-pixel convention holds
(EmptyLatentImage 256x256 -> latent 32x32 -> 256x256 images). It offers what ComfyUI's nodes call on a VAE:
encode / decode (VAEEncode, VAEDecode) and the spatial ratios some latent nodes read.

Why a centre: ComfyUI samples from x_T = 0 + sigma_max * noise (EmptyLatentImage is all zeros), while training's
x_T at SD's sigma_max 14.6 still carries its image's mean. SD's latents are roughly centred, so zero is near
their mean; here, with centre "zero" (the first model), zero is mid-grey RGB and samples start from a background
the world never has (docs/efficacy.md, "The starting latent"). Centre "background" puts zero at the mean of the
world's backgrounds, so the zero latent is the world's typical empty image.
"""
from __future__ import annotations

import torch

from . import world

SD15_LATENT_SCALE = 0.18215  # comfy.latent_formats.SD15.scale_factor (a test checks it against ComfyUI's)
RATIO = 8                    # pixels per latent cell, each way
CENTRES = {  # name -> the RGB in [-1, 1] that the zero latent stands for
    "zero": (0.0, 0.0, 0.0),
    "background": tuple(round(2 * sum(b[c] for b in world.BACKGROUNDS) / len(world.BACKGROUNDS) - 1, 6)
                        for c in range(3)),
}


class ToyVAE:
    latent_channels = 4
    downscale_ratio = RATIO
    upscale_ratio = RATIO

    def __init__(self, centre=CENTRES["zero"]):
        """centre: three floats, the RGB in [-1, 1] of the zero latent (CENTRES; a weights file says its own)."""
        if len(centre) != 3:
            raise ValueError(f"the toy VAE's centre is an RGB triple in [-1, 1]; got {centre!r}")
        self.centre = tuple(float(c) for c in centre)
        self._centres = {}  # (device, dtype) -> (1, 3, 1, 1) tensor: no host-to-device copy per training step

    def _centre_like(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.device, t.dtype)
        if key not in self._centres:
            self._centres[key] = torch.tensor(self.centre, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
        return self._centres[key]

    def to_unet(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, h, w) in [-1, 1] -> the UNet's x0 (B, 4, h, w): less the centre, and a zero fourth channel.
        Training feeds the UNet this, which is what encode() gives after ComfyUI's process_latent_in."""
        return torch.cat([rgb - self._centre_like(rgb), torch.zeros_like(rgb[:, :1])], dim=1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """ComfyUI IMAGE (B, H, W, 3) in 0..1, H and W multiples of 8 -> LATENT samples (B, 4, H/8, W/8)."""
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.shape[1] % RATIO or pixels.shape[2] % RATIO:
            raise ValueError(f"the toy VAE encodes (B, H, W, 3) images with H and W multiples of {RATIO}; got "
                             f"{tuple(pixels.shape)}")
        rgb = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1).float(), RATIO)
        return self.to_unet(rgb * 2 - 1) / SD15_LATENT_SCALE

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """LATENT samples (B, 4, h, w) -> IMAGE (B, 8h, 8w, 3) in 0..1 on the CPU; the fourth channel is ignored."""
        if samples.ndim != 4 or samples.shape[1] != self.latent_channels:
            raise ValueError(f"the toy VAE decodes (B, 4, h, w) latents; got {tuple(samples.shape)}")
        rgb = samples[:, :3].float() * SD15_LATENT_SCALE
        rgb = ((rgb + self._centre_like(rgb)).clamp(-1, 1) + 1) / 2
        rgb = rgb.repeat_interleave(RATIO, dim=2).repeat_interleave(RATIO, dim=3)
        return rgb.movedim(1, -1).to("cpu")

    def spacial_compression_encode(self) -> int:  # ComfyUI's spelling
        return RATIO

    def spacial_compression_decode(self) -> int:
        return RATIO

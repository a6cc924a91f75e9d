"""The toy model's VAE: a fixed, invertible map between the world's 32x32 RGB images and a 4x32x32 latent.

Why no learned VAE: the world's images are small enough to diffuse in pixel space, and a fixed map keeps the
judge's reading of an image exact. The latent holds RGB in [-1, 1] divided by SD1.5's latent scale, so that
ComfyUI's process_latent_in (x 0.18215) hands the UNet RGB in [-1, 1], plus a zero fourth channel; decoding
inverts that and repeats each pixel 8x8, so ComfyUI's 8x latent-to-pixel convention holds (EmptyLatentImage
256x256 -> latent 32x32 -> 256x256 images). It offers what ComfyUI's nodes call on a VAE: encode / decode
(VAEEncode, VAEDecode) and the spatial ratios some latent nodes read.
"""
from __future__ import annotations

import torch

SD15_LATENT_SCALE = 0.18215  # comfy.latent_formats.SD15.scale_factor (a test checks it against ComfyUI's)
RATIO = 8                    # pixels per latent cell, each way


class ToyVAE:
    latent_channels = 4
    downscale_ratio = RATIO
    upscale_ratio = RATIO

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """ComfyUI IMAGE (B, H, W, 3) in 0..1, H and W multiples of 8 -> LATENT samples (B, 4, H/8, W/8)."""
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.shape[1] % RATIO or pixels.shape[2] % RATIO:
            raise ValueError(f"the toy VAE encodes (B, H, W, 3) images with H and W multiples of {RATIO}; got "
                             f"{tuple(pixels.shape)}")
        rgb = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1).float(), RATIO)
        zero = torch.zeros_like(rgb[:, :1])
        return torch.cat([rgb * 2 - 1, zero], dim=1) / SD15_LATENT_SCALE

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """LATENT samples (B, 4, h, w) -> IMAGE (B, 8h, 8w, 3) in 0..1 on the CPU; the fourth channel is ignored."""
        if samples.ndim != 4 or samples.shape[1] != self.latent_channels:
            raise ValueError(f"the toy VAE decodes (B, 4, h, w) latents; got {tuple(samples.shape)}")
        rgb = ((samples[:, :3].float() * SD15_LATENT_SCALE).clamp(-1, 1) + 1) / 2
        rgb = rgb.repeat_interleave(RATIO, dim=2).repeat_interleave(RATIO, dim=3)
        return rgb.movedim(1, -1).to("cpu")

    def spacial_compression_encode(self) -> int:  # ComfyUI's spelling
        return RATIO

    def spacial_compression_decode(self) -> int:
        return RATIO

"""CLIP's and BLIP's image preprocessing, done in torch on ComfyUI IMAGE tensors.

The paper's scores were computed on PNG files: 8-bit RGB that OpenAI's `clip` preprocess (torchvision Resize of
the short side to 224, bicubic, on the PIL image; CenterCrop 224) and LAVIS's blip_image_eval (Resize to
384x384, bicubic, on the PIL image) turn into normalised tensors. Here the same steps run on the (B, H, W, 3)
float tensor a ComfyUI node receives, without a PIL round trip, and follow what PIL does to 8-bit images:

- the image is first rounded to 8-bit levels, as saving the PNG did (diffusers rounds x * 255);
- PIL resizes in two passes, horizontal then vertical, each skipped when that side keeps its size, with a
  bicubic kernel of a = -0.5 whose support widens with the downscaling factor (antialiasing), and rounds and
  clips to 0..255 after each pass. torch's bicubic with antialias=True uses the same kernel and support, so
  each pass here is one such interpolate on one axis followed by the same rounding.

What remains different from PIL (README.md, "Evaluation nodes"): PIL sums with fixed-point (22-bit)
coefficients, torch in float32, so a value can differ by one 8-bit level where it falls next to a rounding
boundary; and recent Pillow releases start with the vertical pass when it shrinks more (portrait images), where
the Pillow of the paper's time, like this port, always started horizontally.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# OpenAI CLIP's normalisation; LAVIS's BlipImageBaseProcessor uses the same numbers.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def check_images(images: torch.Tensor) -> None:
    """A ComfyUI IMAGE: (B, H, W, 3), float, values 0..1."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a ComfyUI IMAGE batch of shape (B, H, W, 3), got {shape}; connect the output "
                         f"of VAE Decode or Load Image (an RGBA or mask input has to be converted to RGB first)")
    if not images.is_floating_point():
        raise ValueError(f"expected a float IMAGE with values 0..1, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("the IMAGE batch is empty: there is nothing to score")


def pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float32 8-bit levels 0..255, rounded as the PNG files of the paper were."""
    return (images.detach().float().clamp(0.0, 1.0) * 255.0).round().movedim(-1, 1).contiguous()


def _round_levels(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5).clamp_(0.0, 255.0)  # PIL's clip8 rounds half up


def resize_like_pil(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL's Image.resize(BICUBIC) of 8-bit images on (B, 3, H, W) levels: horizontal pass, then vertical pass."""
    if levels.shape[-1] != width:
        levels = _round_levels(F.interpolate(levels, size=(levels.shape[-2], width), mode="bicubic",
                                             align_corners=False, antialias=True))
    if levels.shape[-2] != height:
        levels = _round_levels(F.interpolate(levels, size=(height, levels.shape[-1]), mode="bicubic",
                                             align_corners=False, antialias=True))
    return levels


def normalize(levels: torch.Tensor) -> torch.Tensor:
    """ToTensor's / 255 and OpenAI's mean / std."""
    mean = torch.tensor(OPENAI_MEAN, device=levels.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=levels.device).view(1, 3, 1, 1)
    return (levels / 255.0 - mean) / std


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision Resize(size) with an int: the short side becomes `size`, the long side int(size * long / short)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """OpenAI CLIP's preprocess: short side to `size` (bicubic), centre crop size x size, normalise.
    (B, H, W, 3) in 0..1 -> (B, 3, size, size) float32."""
    check_images(images)
    levels = pixel_levels(images)
    height, width = short_side_size(levels.shape[-2], levels.shape[-1], size)
    levels = resize_like_pil(levels, height, width)
    top = int(round((height - size) / 2.0))  # torchvision center_crop, Python's round
    left = int(round((width - size) / 2.0))
    return normalize(levels[..., top:top + size, left:left + size])


def blip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """LAVIS's blip_image_eval: resize to size x size (bicubic, the aspect is not kept), normalise.
    (B, H, W, 3) in 0..1 -> (B, 3, size, size) float32."""
    check_images(images)
    return normalize(resize_like_pil(pixel_levels(images), size, size))

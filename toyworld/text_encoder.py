"""The toy model's text encoder: ComfyUI's SD1 CLIP (comfy.sd.CLIP with SD1Tokenizer and SD1ClipModel, the real
SD1 tokenizer and the CLIP-L layout) with 0 transformer layers and frozen random embeddings.

Why 0 layers (shared/notes/efficacy-probe.md): with a random 12-layer causal encoder every position after a word,
the padding included, carries the prompt, the UNet learns to read it from there, and no subject token stands
out for A&E to grip; with 0 layers the context at each position is LayerNorm(token embedding + position
embedding), so a shape noun's information lives at that noun's position only, as A&E assumes of SD's CLIP.

Why random and frozen: the embeddings are 768-dimensional random vectors (uniform, unit variance), nearly
orthogonal, so each word is distinguishable; they are regenerated from EMBEDDING_SEED, not stored, so the weights
file holds only the UNet. They come from the raw 64-bit stream of numpy's PCG64, which numpy guarantees across
versions (its distribution methods it does not), turned into floats here. Their `digest` is saved with the weights and checked on load, in
case some numpy ever draws differently.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from .comfy_host import import_comfy

EMBEDDING_SEED = 20230126  # fixed: the weights file is only valid with the embeddings it was trained on
CLIP_CONFIG = {"num_hidden_layers": 0}  # the rest is CLIP-L's (comfy/sd1_clip_config.json): 768 wide, 77 positions


def embedding_tables(vocab: int, positions: int, width: int, seed: int = EMBEDDING_SEED):
    """(token embedding (vocab, width), position embedding (positions, width)), float32, each value uniform on
    [-sqrt(3), sqrt(3)) (mean 0, variance 1) in steps of 2^-24."""
    n = (vocab + positions) * width
    raw = np.random.PCG64(seed).random_raw((n + 1) // 2).view("<u4")[:n]  # two 32-bit draws per 64-bit word
    values = (raw >> np.uint32(8)).astype(np.float32)
    values *= np.float32(2.0 ** -23 * 3 ** 0.5)
    values -= np.float32(3 ** 0.5)
    values = values.reshape(vocab + positions, width)
    return torch.from_numpy(values[:vocab]), torch.from_numpy(values[vocab:])


def digest(tokens: torch.Tensor, position: torch.Tensor) -> str:
    """SHA-256 of every 64th token row and the position table: saved with the weights, compared on load."""
    h = hashlib.sha256()
    for table in (tokens[::64], position):
        h.update(table.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def encode(clip, text: str) -> torch.Tensor:
    """(1, 77, 768) on the CPU, float32: what CLIP Text Encode gives the UNet for `text`."""
    cond = clip.encode_from_tokens(clip.tokenize(text))
    return cond.to("cpu", torch.float32)


def build_clip(device) -> tuple[object, str]:
    """(the comfy.sd.CLIP with its tables filled, on `device`, computing in float32; the tables' digest)."""
    device = torch.device(device)
    import_comfy(cpu=device.type == "cpu")
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    options = {"clip_l_model_config": CLIP_CONFIG, "load_device": device, "offload_device": torch.device("cpu"),
               "initial_device": device, "dtype": torch.float32}
    with torch.inference_mode():
        clip = comfy.sd.CLIP(target, model_options=options)
        embeddings = clip.cond_stage_model.clip_l.transformer.text_model.embeddings
        positions, width = embeddings.position_embedding.weight.shape
        tokens, position = embedding_tables(embeddings.token_embedding.weight.shape[0], positions, width)
        state = {
            "clip_l.transformer.text_model.embeddings.token_embedding.weight": tokens,
            "clip_l.transformer.text_model.embeddings.position_embedding.weight": position,
            "clip_l.transformer.text_model.final_layer_norm.weight": torch.ones(width),
            "clip_l.transformer.text_model.final_layer_norm.bias": torch.zeros(width),
            "clip_l.transformer.text_projection.weight": torch.eye(width),
        }
        missing, unexpected = clip.cond_stage_model.load_state_dict(state, strict=False)
    left = [k for k in missing if not k.endswith("logit_scale")]
    if left or unexpected:
        raise RuntimeError(f"the toy CLIP's layout changed: missing {left}, unexpected {unexpected}")
    return clip, digest(tokens, position)

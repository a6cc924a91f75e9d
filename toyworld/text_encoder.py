"""The toy model's text encoder: ComfyUI's SD1 CLIP (comfy.sd.CLIP with SD1Tokenizer and SD1ClipModel, the real
SD1 tokenizer and the CLIP-L layout) with 0 transformer layers and random embeddings, frozen or trained.

Why 0 layers (shared/notes/efficacy-probe.md): with a random 12-layer causal encoder every position after a word,
the padding included, carries the prompt, the UNet learns to read it from there, and no subject token stands
out for A&E to grip; with 0 layers the context at each position is LayerNorm(token embedding + position
embedding), so a shape noun's information lives at that noun's position only, as A&E assumes of SD's CLIP.

Why random: the embeddings are 768-dimensional random vectors (uniform, unit variance), nearly orthogonal, so each
word is distinguishable; they are regenerated from EMBEDDING_SEED, not stored. They come from the raw 64-bit
stream of numpy's PCG64, which numpy guarantees across versions (its distribution methods it does not), turned
into floats here. Their `digest` is saved with the weights and checked on load, in case some numpy ever draws
differently.

Frozen or trained: the committed model keeps them frozen. Its held-out subjects' maps did not sit on objects
(docs/efficacy.md), so a model may instead train, with its UNet, the rows of the words its captions use and the
position table (`Trainable`); only those rows are stored in its weights file (under TEXT_PREFIX), the other
49,000-odd rows stay the seed's. (Training them did not change the benchmark's answer.)
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from .comfy_host import import_comfy

EMBEDDING_SEED = 20230126  # fixed: the weights file is only valid with the embeddings it was trained on
CLIP_CONFIG = {"num_hidden_layers": 0}  # the rest is CLIP-L's (comfy/sd1_clip_config.json): 768 wide, 77 positions
TEXT_PREFIX = "text_embeddings."  # a weights file's trained rows: token_ids (int64), tokens, position (float32)


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


def context(tokens: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """What the 0-layer CLIP gives the UNet: LayerNorm(token embedding + position embedding), with the final layer
    norm's identity affine (tested equal to CLIP Text Encode); differentiable, for training."""
    return torch.nn.functional.layer_norm(tokens + position, position.shape[-1:])


class Trainable(torch.nn.Module):
    """The trained variant's parameters: the embedding rows of `token_ids` (the words the captions use, the start
    and end tokens) and the position table, initialised from the seed's tables."""

    def __init__(self, token_ids: torch.Tensor, tokens: torch.Tensor, position: torch.Tensor):
        super().__init__()
        self.register_buffer("token_ids", token_ids.long().clone())
        self.tokens = torch.nn.Parameter(tokens[token_ids].clone())
        self.position = torch.nn.Parameter(position.clone())
        lookup = torch.full((tokens.shape[0],), -1, dtype=torch.long)
        lookup[token_ids] = torch.arange(len(token_ids))
        self.register_buffer("row_of", lookup)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, 77) token ids (each among token_ids) -> (N, 77, 768) contexts."""
        return context(self.tokens[self.row_of[ids]], self.position)

    def stored(self) -> dict[str, torch.Tensor]:
        """The tensors a weights file keeps (under TEXT_PREFIX)."""
        return {"token_ids": self.token_ids, "tokens": self.tokens.detach(), "position": self.position.detach()}


def token_ids(clip, text: str) -> list[int]:
    """The 77 token ids CLIP Text Encode feeds the embedding for `text` (start, words, end, end padding)."""
    return [t for t, _ in clip.tokenize(text)["l"][0]]


def build_clip(device, trained: dict[str, torch.Tensor] | None = None) -> tuple[object, str]:
    """(the comfy.sd.CLIP with its tables filled, on `device`, computing in float32; the seed's tables' digest).
    `trained` (Trainable.stored()): rows that replace the seed's."""
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
        seeded = digest(tokens, position)
        if trained is not None:
            position = trained["position"].float()
            tokens[trained["token_ids"].long()] = trained["tokens"].float()
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
    return clip, seeded

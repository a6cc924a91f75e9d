"""The toy model as ComfyUI objects: `load(weights) -> (MODEL, CLIP, VAE)`, and the weights file's format.

MODEL is a comfy.model_patcher.ModelPatcher around ComfyUI's SD15 BaseModel (unet.py), CLIP a comfy.sd.CLIP
(text_encoder.py), VAE the fixed map of vae.py, so the pack's nodes (Select Subject Tokens, A&E KSampler,
Attention Map Preview) and ComfyUI's own (KSampler, VAEDecode, EmptyLatentImage, ...) take them unchanged.

The file is a safetensors of the UNet's weights in fp16 under ComfyUI's names (diffusion_model.*), with its
unet_config, the text encoder's settings and digest, and the training settings in the metadata, so a file says
everything needed to rebuild and reproduce it. A model whose text embeddings were trained also holds their rows
(text_embeddings.*, float32: about 0.3 MB) and says "text_embeddings": "trained"; a file without them
(the first model) uses the seed's frozen tables. "latent_centre" is the RGB the toy VAE's zero latent stands for
(vae.CENTRES); a file without it (the first model) was trained with the zero centre.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import text_encoder, unet
from .comfy_host import import_comfy
from .vae import CENTRES, ToyVAE

FORMAT = "aande-toyworld-1"


def metadata(unet_config: dict, clip_digest: str, training: dict, trained_text: bool,
             latent_centre=CENTRES["zero"]) -> dict[str, str]:
    """The weights file's metadata (safetensors takes str -> str)."""
    return {"format": FORMAT, "unet_config": json.dumps(unet_config, sort_keys=True),
            "latent_centre": json.dumps(list(latent_centre)),
            "clip_config": json.dumps(text_encoder.CLIP_CONFIG, sort_keys=True),
            "embedding_seed": str(text_encoder.EMBEDDING_SEED), "clip_digest": clip_digest,
            "text_embeddings": "trained" if trained_text else "frozen",
            "training": json.dumps(training, sort_keys=True)}


def save(path: str | Path, unet_state: dict[str, torch.Tensor], unet_config: dict, clip_digest: str,
         training: dict, text_state: dict[str, torch.Tensor] | None = None,
         latent_centre=CENTRES["zero"]) -> Path:
    """Write a UNet state dict (ComfyUI's names inside diffusion_model) in fp16, the trained text rows
    (text_encoder.Trainable.stored()) if any in float32, and the metadata with the VAE's latent centre; returns
    the path."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"diffusion_model.{k}": v.detach().to("cpu", torch.float16).contiguous()
             for k, v in unet_state.items()}
    for k, v in (text_state or {}).items():
        state[text_encoder.TEXT_PREFIX + k] = v.detach().to("cpu", v.dtype if k == "token_ids" else
                                                             torch.float32).contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp),
              metadata=metadata(unet_config, clip_digest, training, text_state is not None, latent_centre))
    tmp.replace(path)  # a reader never sees half a file (the device job saves while it trains)
    return path


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, torch.Tensor] | None]:
    """(the UNet's state dict without the diffusion_model. prefix, the metadata, the trained text rows or None);
    clear errors for other files."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no toy-world weights at {path}: train them with `python -m toyworld.train`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a toy-world weights file (format {meta.get('format')!r}, "
                             f"expected {FORMAT!r})")
        state = {k.removeprefix("diffusion_model."): f.get_tensor(k) for k in f.keys()
                 if not k.startswith(text_encoder.TEXT_PREFIX)}
        text = {k.removeprefix(text_encoder.TEXT_PREFIX): f.get_tensor(k) for k in f.keys()
                if k.startswith(text_encoder.TEXT_PREFIX)}
    trained = meta.get("text_embeddings", "frozen") == "trained"
    if trained != bool(text) or (text and set(text) != {"token_ids", "tokens", "position"}):
        raise ValueError(f"{path} says its text embeddings are {meta.get('text_embeddings', 'frozen')!r} but holds "
                         f"{sorted(text) or 'no'} text rows")
    return state, meta, text or None


def load(weights_path: str | Path, device="cpu"):
    """(MODEL, CLIP, VAE) from a weights file, on `device`, computing in float32."""
    device = torch.device(device)
    import_comfy(cpu=device.type == "cpu")
    import comfy.model_patcher
    state, meta, text = read(weights_path)
    if json.loads(meta["clip_config"]) != text_encoder.CLIP_CONFIG or \
            int(meta["embedding_seed"]) != text_encoder.EMBEDDING_SEED:
        raise ValueError(f"{weights_path} was trained with another text encoder ({meta['clip_config']}, seed "
                         f"{meta['embedding_seed']}) than this code builds")
    clip, digest = text_encoder.build_clip(device, text)
    if digest != meta["clip_digest"]:
        raise ValueError(f"the text encoder's embeddings differ from those {weights_path} was trained with "
                         f"(digest {digest} != {meta['clip_digest']}): numpy draws them differently here")
    with torch.inference_mode():  # as ComfyUI's loaders leave a model's weights
        base = unet.build_model(json.loads(meta["unet_config"]), device)
        own = base.diffusion_model.state_dict()
        if set(own) != set(state):
            raise ValueError(f"{weights_path} does not match its unet_config: missing "
                             f"{sorted(set(own) - set(state))[:5]}, extra {sorted(set(state) - set(own))[:5]}")
        for name, tensor in state.items():
            own[name].copy_(tensor)
    model = comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=torch.device("cpu"))
    # files from before the centre was stored were trained with the zero centre; ToyVAE checks the triple
    centre = json.loads(meta["latent_centre"]) if "latent_centre" in meta else CENTRES["zero"]
    return model, clip, ToyVAE(centre)

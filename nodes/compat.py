"""Every place where the pack depends on how ComfyUI is built inside, in one module.

The rest of the pack calls these functions and never reaches into ComfyUI's objects itself, so a change in
ComfyUI shows up here. Each entry says which ComfyUI versions it was checked against: "0.3.52, 0.3.75" ran in the
test suite; "0.38" means read in upstream Comfy-Org/ComfyUI (0.38.1), which cannot be installed here. ComfyUI
modules are looked up when a function runs, not bound at import, so tests (and other packs) that replace a
ComfyUI function are seen.
"""
from __future__ import annotations

import importlib
import re
import sys

import torch


def _comfy(name: str):
    return importlib.import_module(name)


# ---------------------------------------------------------------- sampling

def ksampler_class():
    """comfy.samplers.KSAMPLER: sampler_function(model, x, sigmas, extra_args, callback, disable, **extra_options),
    with .extra_options and .inpaint_options. Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.samplers").KSAMPLER


def sampler_base_class():
    """comfy.samplers.Sampler, the base of SAMPLER objects (sample(model_wrap, sigmas, extra_args, callback, noise,
    latent_image, denoise_mask, disable_pbar)). Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.samplers").Sampler


def sampler_names() -> list[str]:
    """KSampler's sampler list. Checked: 0.3.52, 0.3.75, 0.38."""
    return list(_comfy("comfy.samplers").KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    """KSampler's scheduler list. Checked: 0.3.52, 0.3.75, 0.38."""
    return list(_comfy("comfy.samplers").KSampler.SCHEDULERS)


def common_ksampler(*args, **kwargs):
    """The KSampler node's own sampling function (nodes.common_ksampler): the A&E KSampler calls it with a patched
    model, so it makes the noise, sigmas, preview callback and latent dict exactly as the stock KSampler does
    (newer versions pass and pop the latent's downscale-ratio keys). Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("nodes").common_ksampler(*args, **kwargs)


def seed_noise(latent: torch.Tensor, seed: int) -> torch.Tensor:
    """The initial noise the KSampler node draws for `latent` and `seed` (comfy.sample.prepare_noise, CPU
    generator). Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.sample").prepare_noise(latent, seed)


def sample_with_noise(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent):
    """What the KSampler node samples for a given noise (comfy.sample.sample: sigmas of steps/scheduler, the
    sampler by name, CFG), without a progress bar. Checked: 0.3.52, 0.3.75, 0.38."""
    latent = _comfy("comfy.sample").fix_empty_latent_channels(model, latent)
    return _comfy("comfy.sample").sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                         latent, denoise=1.0, disable_pbar=True, seed=0)


def load_checkpoint(path: str):
    """(MODEL, CLIP, VAE) of a checkpoint file, as CheckpointLoaderSimple loads it, with ComfyUI's embeddings
    folder. Checked: 0.3.52, 0.3.75, 0.38."""
    folder_paths = _comfy("folder_paths")
    out = _comfy("comfy.sd").load_checkpoint_guess_config(
        path, output_vae=True, output_clip=True, embedding_directory=folder_paths.get_folder_paths("embeddings"))
    return out[:3]


def calc_cond_batch(model, conds, x, sigma, model_options):
    """The model's prediction for a list of conds (runs calc_cond_batch wrappers, ControlNets, hooks).
    Checked: 0.3.52, 0.3.75, 0.38 (0.38 also calls model.current_patcher.prepare_state first)."""
    return _comfy("comfy.samplers").calc_cond_batch(model, conds, x, sigma, model_options)


def throw_if_interrupted():
    """Raises ComfyUI's interrupt exception when the user pressed Cancel. Checked: 0.3.52, 0.3.75, 0.38."""
    _comfy("comfy.model_management").throw_exception_if_processing_interrupted()


def guider_model(guider):
    """The BaseModel a guider (the `model_wrap` a SAMPLER gets) samples with, set during sampling.
    Checked: 0.3.52, 0.3.75, 0.38."""
    return guider.inner_model


def guider_positive(guider) -> list[dict]:
    """The guider's processed positive conds (with model_conds), or [] when it has none.
    Checked: 0.3.52, 0.3.75, 0.38."""
    conds = getattr(guider, "conds", None) or {}
    return list(conds.get("positive") or [])


def is_eps_family(model) -> bool:
    """eps- or v-prediction sampling (comfy.model_sampling.EPS and its subclass V_PREDICTION): what A&E's
    variance-preserving latent assumes. Checked: 0.3.52, 0.3.75, 0.38."""
    return isinstance(model.model_sampling, _comfy("comfy.model_sampling").EPS)


def sigma_data(model) -> float:
    """sigma_data of the model's sampling (1.0 for SD's discrete schedules). Checked: 0.3.52, 0.3.75, 0.38."""
    return float(getattr(model.model_sampling, "sigma_data", 1.0))


# ---------------------------------------------------------------- model patches and wrappers

SAMPLER_SAMPLE = "sampler_sample"  # comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE; 0.3.52, 0.3.75, 0.38


def add_sampler_wrapper(model_patcher, key: str, wrapper) -> None:
    """Register a SAMPLER_SAMPLE wrapper on a ModelPatcher (a clone), replacing one under the same key: the guider
    runs it around sampler.sample(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
    disable_pbar). Checked: 0.3.52, 0.3.75, 0.38."""
    model_patcher.remove_wrappers_with_key(SAMPLER_SAMPLE, key)
    model_patcher.add_wrapper_with_key(SAMPLER_SAMPLE, key, wrapper)


def continue_with_sampler(executor, sampler, *args):
    """Run the rest of a SAMPLER_SAMPLE wrapper chain with `sampler` in place of executor.class_obj: the later
    wrappers still run, and the chain ends in sampler.sample. Uses WrapperExecutor's public fields wrappers/idx.
    Checked: 0.3.52, 0.3.75, 0.3.64 (0.38's samplers.py builds the same executor)."""
    wrapper_executor = _comfy("comfy.patcher_extension").WrapperExecutor
    rest = wrapper_executor.new_class_executor(sampler.sample, sampler, executor.wrappers, executor.idx + 1)
    return rest.execute(*args)


# wrapper types that run inside calc_cond_batch, i.e. inside A&E's gradient pass
WRAPPERS_IN_PASS = ("calc_cond_batch", "apply_model", "diffusion_model")


def foreign_patches(model_options: dict, cond: dict) -> list[str]:
    """Names of the patch kinds other nodes installed that run inside a model call (attention replacements,
    block patches, wrappers of calc_cond_batch / apply_model / the diffusion model, patcher callbacks, a model
    function wrapper, hooks, GLIGEN): Python state may drive them at every call.
    Checked: 0.3.52, 0.3.75, 0.38."""
    topts = model_options.get("transformer_options", {})
    found = [k for k in ("patches", "patches_replace", "callbacks") if _non_empty(topts.get(k))]
    wrappers = topts.get("wrappers", {})
    found += [f"{k} wrappers" for k in WRAPPERS_IN_PASS if _non_empty(wrappers.get(k))]
    found += [k for k in ("model_function_wrapper",) if model_options.get(k) is not None]
    found += [k for k in ("hooks", "gligen") if cond.get(k) is not None]
    return found


def _non_empty(value) -> bool:
    if isinstance(value, dict):
        return any(_non_empty(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return value is not None


def weight_streaming(model) -> str | None:
    """Why ComfyUI may move this model's weights during a run, or None: a dynamic-VRAM patcher
    (ModelPatcher.is_dynamic(), 0.38 only) or lowvram offloading (model_lowvram). Checked: 0.3.52, 0.3.75, 0.38."""
    patcher = getattr(model, "current_patcher", None)
    is_dynamic = getattr(patcher, "is_dynamic", None)
    if callable(is_dynamic) and is_dynamic():
        return "ComfyUI streams this model's weights (dynamic VRAM)"
    if getattr(model, "model_lowvram", False):
        return "the model is partly offloaded to the CPU (lowvram)"
    return None


def text_embedding(cond: dict):
    """The (B, L, D) text embedding a processed cond feeds the UNet's cross-attention, or None.
    Checked: 0.3.52, 0.3.75, 0.38."""
    return cond.get("cross_attn")


def cond_on_device(cond: dict, device) -> dict:
    """A copy of a processed cond whose model inputs (text embedding, SDXL's vector...) are already on `device`
    (CONDRegular._copy_with). ComfyUI keeps them on the CPU and copies them in every forward.
    Checked: 0.3.52, 0.3.75, 0.38."""
    inputs = {k: c._copy_with(c.cond.to(device)) if isinstance(getattr(c, "cond", None), torch.Tensor) else c
              for k, c in cond["model_conds"].items()}
    return dict(cond, model_conds=inputs)


def control_networks(cond: dict) -> list[torch.nn.Module]:
    """The networks of a cond's ControlNet / T2I-Adapter chain (control_model, t2i_model, previous_controlnet).
    Checked: 0.3.52, 0.3.75, 0.38."""
    out, control = [], cond.get("control")
    while control is not None:
        out += [m for m in (getattr(control, "control_model", None), getattr(control, "t2i_model", None))
                if isinstance(m, torch.nn.Module)]
        control = getattr(control, "previous_controlnet", None)
    return out


# ---------------------------------------------------------------- the UNet's attention

SKIP_PATCH = "input_block_patch_after_skip"  # openaimodel: called on each input block's output as it is stored


def cross_attention_layers(diffusion_model) -> list[tuple[tuple[str, int, int], int]]:
    """[(attn2 replace-patch key (block, id, index), downsampling factor)] of a UNet, in execution order: the
    transformer blocks with text cross-attention in its input, middle and output blocks.
    Checked: 0.3.52, 0.3.75, 0.38 (openaimodel.UNetModel, attention.SpatialTransformer)."""
    openaimodel = _comfy("comfy.ldm.modules.diffusionmodules.openaimodel")
    spatial = _comfy("comfy.ldm.modules.attention").SpatialTransformer
    if not isinstance(diffusion_model, openaimodel.UNetModel):
        raise ValueError(f"Attend-and-Excite needs a UNet with text cross-attention (SD1.x, SD2.x, SDXL); "
                         f"this model is a {type(diffusion_model).__name__}")
    layers, factor = [], 1

    def collect(block, name, block_id):
        for module in block:
            if isinstance(module, spatial):
                for index, tb in enumerate(module.transformer_blocks):
                    if getattr(tb, "attn2", None) is not None and not getattr(tb, "switch_temporal_ca_to_sa", False):
                        layers.append(((name, block_id, index), factor))

    for block_id, block in enumerate(diffusion_model.input_blocks):
        collect(block, "input", block_id)
        if any(isinstance(m, openaimodel.Downsample) for m in block):
            factor *= 2
    if diffusion_model.middle_block is not None:
        collect(diffusion_model.middle_block, "middle", 0)
    for block_id, block in enumerate(diffusion_model.output_blocks):
        collect(block, "output", block_id)
        if any(isinstance(m, openaimodel.Upsample) for m in block):
            factor //= 2
    if not layers:
        raise ValueError("this UNet has no text cross-attention layers, which Attend-and-Excite needs")
    return layers


def residual_blocks(diffusion_model) -> list:
    """The UNet's residual blocks (openaimodel.ResBlock), called as block(x, emb, ...).
    Checked: 0.3.52, 0.3.75, 0.38."""
    resblock = _comfy("comfy.ldm.modules.diffusionmodules.openaimodel").ResBlock
    return [m for m in diffusion_model.modules() if isinstance(m, resblock)]


def feed_forwards(diffusion_model) -> list:
    """The transformer blocks' feed-forward layers (attention.FeedForward), called as ff(x).
    Checked: 0.3.52, 0.3.75, 0.38."""
    feed_forward = _comfy("comfy.ldm.modules.attention").FeedForward
    return [m for m in diffusion_model.modules() if isinstance(m, feed_forward)]


def pass_memory_estimate(model, latent_shape) -> float:
    """Bytes a gradient pass is expected to need beyond plain sampling: ComfyUI's own forward estimate
    (BaseModel.memory_required) for the pass's input, times 15, the largest ratio of measured pass memory to that
    estimate (SD1.5 512x512: ~3, SDXL 1024x1024: ~14, docs/benchmarks.md). Checked: 0.3.52, 0.3.75, 0.38."""
    return 15 * model.memory_required(list(latent_shape))


def free_vram(device) -> float:
    """Bytes ComfyUI counts as free on `device` (its get_free_memory: the driver's free memory plus what torch has
    reserved but not allocated). Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.model_management").get_free_memory(device)


def replace_patches(model_options: dict) -> tuple[dict, dict]:
    """(a copy of model_options, its transformer_options' patches_replace copied one level deep), ready to take
    attn1/attn2 replace patches keyed (block, id) or (block, id, index). Checked: 0.3.52, 0.3.75, 0.38."""
    opts = dict(model_options)
    topts = dict(opts.get("transformer_options", {}))
    replace = {k: dict(v) for k, v in topts.get("patches_replace", {}).items()}
    topts["patches_replace"] = replace
    opts["transformer_options"] = topts
    return opts, replace


def add_block_patch(model_options: dict, name: str, patch) -> None:
    """Append a transformer_options["patches"][name] patch to an options copy from replace_patches().
    Checked: 0.3.52, 0.3.75, 0.38."""
    topts = model_options["transformer_options"]
    patches = {k: list(v) for k, v in topts.get("patches", {}).items()}
    patches.setdefault(name, []).append(patch)
    topts["patches"] = patches


def has_block_patches(model_options: dict) -> bool:
    """Whether other nodes installed transformer_options["patches"] (input/output/middle block patches, attn
    patches, ...), which run inside every model call. Checked: 0.3.52, 0.3.75, 0.38."""
    return _non_empty(model_options.get("transformer_options", {}).get("patches"))


def lookup_replace(patches: dict, key):
    """The replace patch ComfyUI would run for a transformer block: keyed by (block, id, index), else (block, id).
    Checked: 0.3.52, 0.3.75, 0.38 (BasicTransformerBlock.forward)."""
    return patches.get(key, patches.get(key[:2]))


def attention_call(extra_options: dict) -> dict:
    """What a replace patch learns about its call from extra_options: heads, attention precision, the (h, w) of
    the activations, and which batch chunks are cond (0) or uncond (1).
    Checked: 0.3.52, 0.3.75, 0.38."""
    shape = extra_options.get("activations_shape")
    return {"heads": extra_options["n_heads"], "precision": extra_options.get("attn_precision"),
            "hw": tuple(shape[-2:]) if shape is not None else None,
            "cond_or_uncond": extra_options.get("cond_or_uncond") or [0]}


def host_attention(q, k, v, extra_options):
    """ComfyUI's configured attention backend on (B, N, heads*d) tensors (0.38 also takes plain tensors, not only
    AttentionTensorContainers). Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.ldm.modules.attention").optimized_attention(
        q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"))


# ---------------------------------------------------------------- prompts and tokenizers

# tokenizer output keys -> family, and the encoder whose tokens give the indices (SDXL: l and g agree)
FAMILIES = {("l",): "sd1", ("h",): "sd2", ("g", "l"): "sdxl"}
INDEX_ENCODER = {"sd1": "l", "sd2": "h", "sdxl": "l"}


def tokenizer_family(tokenized: dict) -> str:
    """sd1 / sd2 / sdxl from the encoders a tokenize() answered for; a clear error for any other CLIP."""
    family = FAMILIES.get(tuple(sorted(tokenized)))
    if family is None:
        raise ValueError(f"Select Subject Tokens needs an SD1.x, SD2.x or SDXL CLIP; this CLIP has the text "
                         f"encoders {sorted(tokenized)}. Load the CLIP of an SD1/SD2/SDXL checkpoint")
    return family


def clip_prompt_tokens(clip, text: str) -> tuple[str, object, list]:
    """(family, the tokenizer whose indices the UNet sees, its chunks for `text`) on a CLIP: the `clip_l` /
    `clip_h` tokenizer of SD1Tokenizer / SD2 / SDXLTokenizer; chunks are lists of (token id or embedding vector,
    weight, word id), word id 0 for start, end and padding. Checked: 0.3.52, 0.3.75, 0.38."""
    chunks = clip.tokenize(text, return_word_ids=True)
    family = tokenizer_family(chunks)
    key = INDEX_ENCODER[family]
    return family, getattr(clip.tokenizer, f"clip_{key}"), chunks[key]


def family_tokenizer(family: str):
    """A tokenizer of `family` built from ComfyUI's bundled vocabularies (no model, no embeddings).
    Checked: 0.3.52, 0.3.75, 0.38."""
    if family == "sd2":
        return _comfy("comfy.text_encoders.sd2_clip").SD2ClipHTokenizer()
    if family == "sdxl":
        return _comfy("comfy.sdxl_clip").SDXLTokenizer().clip_l
    return _comfy("comfy.sd1_clip").SDTokenizer()


def tokenize_chunks(tokenizer, text: str) -> list:
    """One SDTokenizer's chunks with word ids for `text`. Checked: 0.3.52, 0.3.75, 0.38."""
    return tokenizer.tokenize_with_weights(text, return_word_ids=True)


def vocab_piece(tokenizer, token_id: int) -> str:
    """The byte-level BPE string of a token id ("cat</w>"). Checked: 0.3.52, 0.3.75, 0.38."""
    return tokenizer.inv_vocab[token_id]


def chunk_length(tokenizer) -> int:
    """Tokens per chunk of the text context (77). Checked: 0.3.52, 0.3.75, 0.38."""
    return tokenizer.max_length


def prompt_embeddings(tokenizer, text: str) -> list[tuple[str, torch.Tensor]]:
    """The textual-inversion embeddings `text` names, in prompt order, as (name, vectors), found the way
    upstream's SDTokenizer finds them: "embedding:" at the start of a weighted segment or after any whitespace;
    the name runs to the next whitespace and stops at "[" or "<"; a name that does not load is retried without
    its trailing commas. 0.3.52 and 0.3.75 only split after a space or newline and do not stop at "[" or "<": the
    names they load are found here too, and a name found here that the host did not load matches no vector of
    the prompt, so it is never used. Checked: 0.3.52, 0.3.75, 0.38 (SDTokenizer._try_get_embedding)."""
    if tokenizer.embedding_directory is None:
        return []
    sd1_clip = _comfy("comfy.sd1_clip")
    ident = tokenizer.embedding_identifier
    found = []
    for segment, _ in sd1_clip.token_weights(sd1_clip.escape_important(text), 1.0):
        words = re.split(r"(?<=\s)" + re.escape(ident), sd1_clip.unescape_important(segment))
        for word in words[1:] if not words[0].startswith(ident) else words:
            word = word[len(ident):] if word.startswith(ident) else word
            parts = word.strip("\n").split()
            if not parts:
                continue
            name = re.split(r"[<\[]", parts[0])[0]
            for candidate in dict.fromkeys((name, name.strip(","))):
                embed = sd1_clip.load_embed(candidate, tokenizer.embedding_directory, tokenizer.embedding_size,
                                            tokenizer.embedding_key)
                if embed is not None:
                    found.append((candidate, embed.reshape(-1, embed.shape[-1])))
                    break
    return found


def encode_prompt(clip, text: str):
    """CLIP Text Encode's CONDITIONING for `text`. Checked: 0.3.52, 0.3.75, 0.38."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


# ---------------------------------------------------------------- the server and the prompt being run

def executing_node() -> tuple[str | None, str | None]:
    """(prompt id, node id) of the node ComfyUI is executing now, (None, None) outside a server run
    (comfy_execution.utils.get_executing_context). Checked: 0.3.52, 0.3.75, 0.38."""
    try:
        context = _comfy("comfy_execution.utils").get_executing_context()
    except ImportError:
        return None, None
    return (context.prompt_id, context.node_id) if context is not None else (None, None)


def add_route(method: str, path: str, handler) -> bool:
    """Add an HTTP route to the running server (server.PromptServer.instance.routes); False without a server.
    Checked: 0.3.52, 0.3.75, 0.38."""
    server = sys.modules.get("server")  # main.py imports it before loading custom nodes
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    getattr(instance.routes, method)(path)(handler)
    return True


def temp_image_path(prefix: str, width: int, height: int) -> tuple[str, str, str]:
    """(folder, file name, subfolder) for a preview PNG in ComfyUI's temp folder, as PreviewImage saves one.
    Checked: 0.3.52, 0.3.75, 0.38."""
    folder_paths = _comfy("folder_paths")
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, folder_paths.get_temp_directory(), width, height)
    return folder, f"{name}_{counter:05}_.png", subfolder


# ---------------------------------------------------------------- evaluation models

def register_model_folder(name: str) -> None:
    """Register ComfyUI's model folder `models/<name>` under the key `name` (folder_paths.add_model_folder_path,
    appended after any path extra_model_paths.yaml gave the same key; registering twice changes nothing).
    Checked: 0.3.52, 0.3.75, 0.38."""
    import os.path

    folder_paths = _comfy("folder_paths")
    folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))


def model_folder_paths(name: str) -> list[str]:
    """The folders registered under `name`, in ComfyUI's search order (folder_paths.get_folder_paths).
    Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("folder_paths").get_folder_paths(name)


def torch_device():
    """The device ComfyUI runs models on (comfy.model_management.get_torch_device; the CPU with --cpu).
    Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.model_management").get_torch_device()


def progress_bar(total: int):
    """The running node's progress bar in the frontend (comfy.utils.ProgressBar; .update(1) per item). 0.38 sends
    the first and the last update at once and throttles the ones between to one per 0.1 s.
    Checked: 0.3.52, 0.3.75, 0.38."""
    return _comfy("comfy.utils").ProgressBar(total)

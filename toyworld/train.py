"""Train the toy model: `python -m toyworld.train --out WEIGHTS [--device cuda] [--seed 0]`.

One GPU, a few minutes (defaults sized for an H200; docs/efficacy_design.md), deterministic from --seed: the data
pool, the initial weights and every training draw come from the seed (two H200 runs with the same --steps gave
bitwise-identical weights; a --max-train-s cap makes the step count depend on the GPU's speed). The data is a
pool of world scenes drawn once (world.draw_pool) with random horizontal flips. With --text-embeddings frozen (the
default, the committed model) each caption is encoded once by the toy CLIP, exactly as CLIP Text Encode would
encode it at sampling time; with trained, the embedding rows of the captions' tokens and the position table train
with the UNet (text_encoder.Trainable) and are saved beside it. --latent-centre background trains on the toy VAE's
centred latent (vae.py: ComfyUI's zero starting latent is then the world's mean background); the file records
its centre. --absent P trains on captions that name an object the image lacks, in a share P of the two-object
scenes (world.draw_scene: the neglect the paper's prompts show comes from such data). The noise schedule is the one
ComfyUI samples with (the SD15 model's model_sampling: scaled-linear betas 0.00085..0.012 over 1000 steps), the
loss eps-MSE on the UNet itself, the optimiser AdamW with a short warm-up and a constant rate, and the saved
weights are an exponential moving average (EMA), fp16, with every setting in the file's metadata.

--max-train-s stops training early (recorded in the metadata) so that a device job keeps its time budget;
--save-every-s rewrites the weights file while training, so a job cut short still leaves weights.
--device cpu --quick is the CPU check: a tiny pool and a few steps, and the loss on a fixed batch must fall.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from . import model as toy_model
from . import text_encoder, unet, world
from .comfy_host import import_comfy
from .vae import CENTRES, ToyVAE

GPU_DEFAULTS = {"steps": 4000, "batch": 512, "pool": 100_000, "lr": 5e-4, "warmup": 250, "ema": 0.999,
                "log_every": 100, "eval_batch": 512}
QUICK_DEFAULTS = {"steps": 8, "batch": 4, "pool": 32, "lr": 1e-3, "warmup": 0, "ema": 0.9,
                  "log_every": 2, "eval_batch": 8}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m toyworld.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the weights file to write (.safetensors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="the CPU check: a tiny pool and a few steps")
    for name, value in GPU_DEFAULTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None,
                       help=f"default {value} ({QUICK_DEFAULTS[name]} with --quick)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--text-embeddings", choices=("frozen", "trained"), default="frozen",
                   help="keep the seed's frozen tables (default: the committed model), or train the caption words' "
                        "embedding rows and the positions with the UNet")
    p.add_argument("--latent-centre", choices=tuple(CENTRES), default="zero",
                   help="the RGB the toy VAE's zero latent stands for: zero (default: the committed model, mid-grey) or "
                        "background (the mean of the world's backgrounds, where ComfyUI's empty latent starts)")
    p.add_argument("--absent", type=float, default=0.0,
                   help="share of two-object training scenes whose image keeps one object; the caption names both")
    p.add_argument("--max-train-s", type=float, default=float("inf"),
                   help="stop training after this many seconds of the training loop (the metadata says so)")
    p.add_argument("--save-every-s", type=float, default=60.0, help="rewrite --out this often while training")
    p.add_argument("--workers", type=int, default=0, help="processes drawing the pool (default: the CPU count)")
    args = p.parse_args(argv)
    if not 0.0 <= args.absent <= 1.0:
        p.error(f"--absent is a share of scenes, between 0 and 1; got {args.absent}")
    defaults = QUICK_DEFAULTS if args.quick else GPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.steps < 1 or args.batch < 1 or args.pool < 1:
        p.error("--steps, --batch and --pool must be at least 1")
    return args


def log(message: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {message}", flush=True)


class CaptionText:
    """The UNet's text input for the pool's U distinct captions, by caption number: with frozen embeddings the
    contexts the toy CLIP gives (encoded once on the CPU, as CLIP Text Encode encodes a prompt); with trained ones
    the captions' token ids through text_encoder.Trainable, whose parameters train with the UNet."""

    def __init__(self, captions: list[str], device, trained: bool):
        clip, self.digest = text_encoder.build_clip("cpu")
        distinct = sorted(set(captions))
        self.distinct = len(distinct)
        where = {c: i for i, c in enumerate(distinct)}
        self.index = torch.tensor([where[c] for c in captions], device=device)  # the caption number of each scene
        self.trainable = None
        if trained:
            ids = torch.tensor([text_encoder.token_ids(clip, c) for c in distinct])
            embeddings = clip.cond_stage_model.clip_l.transformer.text_model.embeddings  # the seed's tables
            self.trainable = text_encoder.Trainable(torch.unique(ids), embeddings.token_embedding.weight.detach(),
                                                    embeddings.position_embedding.weight.detach()).to(device)
            self.ids = ids.to(device)
        else:
            with torch.inference_mode():
                contexts = torch.cat([text_encoder.encode(clip, c) for c in distinct])
            self.contexts = contexts.clone().to(device)

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.trainable.parameters()) if self.trainable is not None else []

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """Caption numbers (N,) -> contexts (N, 77, 768)."""
        return self.trainable(self.ids[rows]) if self.trainable is not None else self.contexts[rows]


class Batches:
    """Training batches from the pool: images as the UNet's x0 (the toy VAE's latent after ComfyUI's
    process_latent_in: RGB in [-1, 1] less the VAE's centre, and a zero channel), flipped at random, with their
    caption numbers."""

    def __init__(self, images, caption_index, generator, vae: ToyVAE):
        self.images = images            # (N, 3, 32, 32) uint8 on the device
        self.caption_index = caption_index
        self.generator = generator
        self.vae = vae

    def x0(self, idx, flip):
        x = self.images[idx].float() / 127.5 - 1.0
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return self.vae.to_unet(x)

    def draw(self, batch):
        g, device = self.generator, self.images.device
        idx = torch.randint(0, self.images.shape[0], (batch,), generator=g, device=device)
        flip = torch.rand(batch, generator=g, device=device) < 0.5
        return self.x0(idx, flip), self.caption_index[idx]


def diffusion_loss(net, x0, context, alphas_cumprod, t, noise, autocast):
    """eps-MSE at timesteps t: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, which is exactly what ComfyUI's EPS
    sampling hands the UNet (x / sqrt(sigma^2 + 1) with sigma^2 = (1 - abar) / abar, timestep t)."""
    abar = alphas_cumprod[t][:, None, None, None]
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    with autocast:
        pred = net(xt, t.float(), context)
    return torch.nn.functional.mse_loss(pred.float(), noise)


def train(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu --quick for the CPU check")
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    # the pool first: its worker processes fork before ComfyUI's import initialises CUDA
    workers = args.workers or ((os.cpu_count() or 1) if device.type == "cuda" else 1)
    images, captions = world.draw_pool(args.pool, args.seed, workers=workers, absent=args.absent)
    log(f"pool: {len(captions)} scenes ({captions.count('')} captions empty) in {time.perf_counter() - started:.1f} s "
        f"with {workers} processes")
    import_comfy(cpu=device.type == "cpu")
    encoding = time.perf_counter()
    text = CaptionText(captions, device, trained=args.text_embeddings == "trained")
    log(f"captions: {text.distinct} distinct, {args.text_embeddings} text embeddings, ready in "
        f"{time.perf_counter() - encoding:.1f} s")
    pool = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)

    base = unet.build_model(unet.UNET_CONFIG, device)
    net = base.diffusion_model
    unet.init_weights_(net, args.seed)
    net.train().requires_grad_(True)
    unet_params = list(net.parameters())
    params = unet_params + text.parameters()
    ema = [p.detach().clone() for p in params]
    n_params = sum(p.numel() for p in unet_params)
    alphas_cumprod = (1.0 / (1.0 + base.model_sampling.sigmas.float() ** 2)).to(device)
    log(f"UNet: {n_params / 1e6:.2f} M parameters; schedule from ComfyUI's model_sampling "
        f"({len(alphas_cumprod)} steps, sigma {float(base.model_sampling.sigmas[0]):.4f}.."
        f"{float(base.model_sampling.sigmas[-1]):.2f})")

    cuda = device.type == "cuda"
    optimiser = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay,
                                  fused=cuda)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    generator = torch.Generator(device).manual_seed(args.seed)
    vae = ToyVAE(CENTRES[args.latent_centre])
    batches = Batches(pool, text.index, generator, vae)

    # a fixed evaluation batch (its own generator): the loss there, before and after, says whether training worked
    eval_gen = torch.Generator(device).manual_seed(args.seed + 1)
    eval_x0, eval_rows = Batches(pool, text.index, eval_gen, vae).draw(args.eval_batch)
    eval_t = torch.randint(0, len(alphas_cumprod), (args.eval_batch,), generator=eval_gen, device=device)
    eval_noise = torch.randn(eval_x0.shape, generator=eval_gen, device=device)

    def eval_loss(weights):
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
            net.eval()
            loss = float(diffusion_loss(net, eval_x0, text(eval_rows), alphas_cumprod, eval_t, eval_noise,
                                        autocast))
            net.train()
            for p, s in zip(params, saved):
                p.copy_(s)
        return loss

    settings = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "pool": args.pool, "lr": args.lr,
                "warmup": args.warmup, "ema": args.ema, "weight_decay": args.weight_decay, "betas": [0.9, 0.99],
                "grad_clip": 1.0, "flips": "horizontal, p=0.5", "caption_drop": world.CAPTION_DROP,
                "schedule": "ComfyUI SD15 model_sampling (scaled_linear 0.00085..0.012, 1000 steps)",
                "loss": "eps MSE, t uniform on 0..999", "precision": "bf16 autocast" if cuda else "fp32",
                "quick": args.quick, "max_train_s": args.max_train_s, "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
                "torch": torch.__version__, "unet_parameters": n_params, "distinct_captions": text.distinct,
                "text_embeddings": args.text_embeddings, "latent_centre": args.latent_centre, "absent": args.absent}
    before = eval_loss(params)
    log(f"eval loss before training: {before:.4f}")
    names = [n for n, _ in net.named_parameters()]

    def save(progress: dict):
        """Write the EMA weights (the UNet's buffers as they are, the trained text rows) with the settings and
        `progress`."""
        state = {**net.state_dict(), **dict(zip(names, ema))}
        text_state = None
        if text.trainable is not None:
            names_of_text = (n for n, _ in text.trainable.named_parameters())
            text_state = {**text.trainable.stored(), **dict(zip(names_of_text, ema[len(unet_params):]))}
        return toy_model.save(args.out, state, unet.UNET_CONFIG, text.digest,
                              {**settings, "eval_loss_before": before, **progress}, text_state,
                              vae.centre)

    loop_start = last_save = time.perf_counter()
    history, running, counted = [], torch.zeros((), device=device), 0
    stopped_early, step = False, 0
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / args.warmup) if args.warmup else args.lr
        for group in optimiser.param_groups:
            group["lr"] = lr
        x0, rows = batches.draw(args.batch)
        t = torch.randint(0, len(alphas_cumprod), (args.batch,), generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        loss = diffusion_loss(net, x0, text(rows), alphas_cumprod, t, noise, autocast)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)
        running += loss.detach()
        counted += 1
        now = time.perf_counter()
        if step % args.log_every == 0 or step == args.steps:
            mean = float(running) / counted
            history.append([step, round(mean, 5)])
            log(f"step {step}/{args.steps}: loss {mean:.4f}, lr {lr:.2e}, {step / (now - loop_start):.1f} steps/s")
            running.zero_()
            counted = 0
        if now - loop_start >= args.max_train_s and step < args.steps:
            stopped_early = True
            log(f"stopping at step {step}: --max-train-s {args.max_train_s:g} reached")
            break
        if now - last_save >= args.save_every_s:
            save({"steps_done": step, "in_progress": True, "train_seconds": round(now - loop_start, 1),
                  "loss_history": history})
            last_save = now
    seconds = time.perf_counter() - loop_start
    after = eval_loss(ema)
    log(f"eval loss after training (EMA weights): {after:.4f} (before {before:.4f}); {step} steps in {seconds:.1f} s")
    path = save({"steps_done": step, "stopped_early": stopped_early, "train_seconds": round(seconds, 1),
                 "eval_loss_after": after, "loss_history": history})
    summary = {"out": str(path), "steps_done": step, "stopped_early": stopped_early, "train_seconds": round(seconds, 1),
               "total_seconds": round(time.perf_counter() - started, 1), "eval_loss_before": before,
               "eval_loss_after": after, "loss_history": history, "unet_parameters": n_params,
               "file_bytes": path.stat().st_size}
    log("summary " + json.dumps(summary))
    return summary


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)  # the CPU check shares a small host
    train(args)


if __name__ == "__main__":
    sys.exit(main())

"""The A&E KSampler against diffusers' StableDiffusionAttendAndExcitePipeline (the reference port) on twin weights:
both run 50 DDIM steps (eta 0) at cfg 7.5 from the same initial latent and text embeddings, with the default A&E
settings but max_iter_to_alter. Used by tests/test_parity_diffusers.py (CPU, small) and bench/gpu_checks.py (CUDA,
SD1.5's 64x64 latent).

How the two sides correspond (see /work/shared/notes/reference-parity.md):
- ComfyUI's "ddim" sampler with the "ddim_uniform" schedule is DDIM with eta 0 in x = z * sqrt(1 + sigma^2):
  its sigmas are those of diffusers' timesteps 981, 961, ..., 1 (steps_offset 1).
- sigma(981) = 13.12 is below sigma_max, so ComfyUI starts at x = sigma_0 * noise; the noise passed in is
  z * sqrt(1 + sigma_0^2) / sigma_0 so that x / sqrt(1 + sigma_0^2) is diffusers' z.
- ComfyUI's callback i sees x at the start of step i after A&E moved it in place: the latent the step's CFG
  prediction is made on, which diffusers passes to scheduler.step as `sample`. Past the A&E phase this is
  also diffusers' latent after step i - 1 (its callback).
- Known scheduler difference: ComfyUI's last step goes to sigma 0 and returns the denoised estimate, while
  diffusers' DDIM stops at alphabar(t=0) (sigma ~0.029, set_alpha_to_one False). The final latents differ by
  design, so the comparison is of the latents each of the 50 steps starts from, not the outputs.
- diffusers evaluates the A&E loss at every step (it only skips the update after max_iter_to_alter); our record
  holds the A&E steps only: the altered steps and the refinement steps. Per diffusers step, `_compute_loss` is
  called for: the loss at the step's start, then (when refinement runs k iterations) the loss each iteration
  updates with (the first repeats the start loss) and the loss of the closing forward, which the regular update
  uses. Our StepRecord holds the same as loss, refinement_losses and final_loss; at a refinement step beyond
  max_iter_to_alter nothing uses the closing forward, so we skip it and the record has no final_loss.
"""
import math
from contextlib import contextmanager

import torch

from harness.host import import_comfy

STEPS, CFG, TOKENS = 50, 7.5, [2, 5]
REFINE_STEPS = (0, 10, 20)  # the default thresholds' steps at 50 steps


def inputs(latent: int, context_dim: int = 768, seed: int = 0, device="cpu"):
    """The initial latent z (1, 4, latent, latent) and the text embeddings (cond, uncond), from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 4, latent, latent, generator=gen)
    cond, uncond = torch.randn(2, 1, 77, context_dim, generator=gen)
    return z.to(device), cond.to(device), uncond.to(device)


def run_diffusers(pipe, z, cond, uncond, attn_res: int, max_iter_to_alter: int):
    """Returns (the `_compute_loss` values of each step, the latents each step starts its DDIM update from
    (after A&E), the latents after each step), latents as (STEPS, 1, 4, h, w)."""
    losses, current, starts, latents = [], [], [], []
    compute_loss, scheduler_step = pipe._compute_loss, pipe.scheduler.step

    def recording_loss(max_attention_per_index):
        loss = compute_loss(max_attention_per_index)
        current.append(float(torch.as_tensor(loss).detach()))  # an int 0 when every subject peaks at 1
        return loss

    def callback(step, t, step_latents):
        assert step == len(latents)
        latents.append(step_latents.detach().clone())
        losses.append(list(current))
        current.clear()

    def recording_step(model_output, timestep, sample, *args, **kwargs):
        starts.append(sample.detach().clone())
        return scheduler_step(model_output, timestep, sample, *args, **kwargs)

    pipe._compute_loss, pipe.scheduler.step = recording_loss, recording_step
    try:
        side = z.shape[-1] * 8
        pipe(prompt=None, token_indices=TOKENS, height=side, width=side, num_inference_steps=STEPS,
             guidance_scale=CFG, latents=z.clone(), prompt_embeds=cond, negative_prompt_embeds=uncond,
             output_type="latent", callback=callback, attn_res=(attn_res, attn_res),
             max_iter_to_alter=max_iter_to_alter)
    finally:
        del pipe._compute_loss, pipe.scheduler.step
    return losses, torch.stack(starts), torch.stack(latents)


@contextmanager
def _fixed_noise_and_callback(noise, callback):
    """The A&E KSampler's noise and preview callback replaced (it samples through ComfyUI's common_ksampler)."""
    import comfy.sample
    import latent_preview
    saved = comfy.sample.prepare_noise, latent_preview.prepare_callback
    comfy.sample.prepare_noise = lambda latent, seed, batch_inds=None: noise.clone()
    latent_preview.prepare_callback = lambda model, steps, x0_output_dict=None: callback
    try:
        yield
    finally:
        comfy.sample.prepare_noise, latent_preview.prepare_callback = saved


def run_ours(model, z, cond, uncond, sigmas, attention_res: str, max_iter_to_alter: int):
    """The A&E KSampler with the node's defaults; returns (the attention record, x at each callback, by step)."""
    import_comfy()
    from aande_pack.nodes.declarations.ae_ksampler import AEKSampler
    from aande_pack.nodes.declarations.inputs import ae_inputs
    s0 = float(sigmas[0])
    xs = {}

    def callback(step, x0, x, total_steps):
        xs[step] = x.clone()

    ae = {name: spec[1]["default"] for name, spec in ae_inputs().items()}
    ae.update(token_indices=",".join(map(str, TOKENS)), attention_res=attention_res, max_iter_to_alter=max_iter_to_alter)
    noise = (z * math.sqrt(1 + s0 ** 2) / s0).cpu()
    with _fixed_noise_and_callback(noise, callback), torch.inference_mode():
        _, record = AEKSampler().sample(model, 0, STEPS, CFG, "ddim", "ddim_uniform", [[cond.cpu(), {}]],
                                        [[uncond.cpu(), {}]], {"samples": torch.zeros_like(noise)}, 1.0, **ae)
    return record, xs


def loss_sequence(step):
    """Our StepRecord in the order diffusers computes the losses of a step (without the closing forward of a
    refinement step beyond max_iter_to_alter, whose loss nothing uses)."""
    refined = list(step.refinement_losses[0])
    closing = [float(step.final_loss[0])] if refined and step.final_loss is not None else []
    return [float(step.loss[0])] + refined + closing


def relative(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def compare(unet, model, z, cond, uncond, attention_res: str, attn_res: int, max_iter_to_alter: int) -> dict:
    """Run both sides and measure: the largest loss difference over the A&E steps (refinement included), the
    relative L2 difference of z after the last altered step and the largest over the 50 steps' starting latents,
    and the refinement iterations; `problems` lists every structural mismatch (steps, loss counts)."""
    import comfy.samplers
    from harness.diffusers_twin import pipelines
    _, pipe = pipelines(unet)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "ddim_uniform", STEPS)
    pipe.scheduler.set_timesteps(STEPS)
    alphabar = pipe.scheduler.alphas_cumprod[pipe.scheduler.timesteps]
    problems = []
    if not (torch.allclose(sigmas[:-1].cpu(), ((1 - alphabar) / alphabar).sqrt(), rtol=1e-5) and sigmas[-1] == 0):
        problems.append("the two schedules differ")
    ref_losses, ref_inputs, ref_after = run_diffusers(pipe, z, cond, uncond, attn_res, max_iter_to_alter)
    record, xs = run_ours(model, z, cond, uncond, sigmas, attention_res, max_iter_to_alter)
    expected_steps = list(range(max_iter_to_alter)) + [s for s in REFINE_STEPS if s >= max_iter_to_alter]
    if [s.step for s in record.steps] != expected_steps:
        problems.append(f"recorded steps {[s.step for s in record.steps]}, expected {expected_steps}")
    if not all(s.updated == (s.step < max_iter_to_alter,) for s in record.steps):
        problems.append("a step's update does not follow max_iter_to_alter")
    loss_diff = 0.0
    for step in record.steps:
        ours, ref = loss_sequence(step), ref_losses[step.step]
        if step.step >= max_iter_to_alter:
            ref = ref[:-1]  # the reference's closing forward, unused there
        if len(ours) != len(ref):
            problems.append(f"step {step.step}: {len(ours)} losses (ours) vs {len(ref)} (diffusers)")
            continue
        loss_diff = max(loss_diff, max(abs(a - b) for a, b in zip(ours, ref)))
    device = ref_inputs.device
    z_of = [xs[i].to(device) / math.sqrt(1 + float(sigmas[i]) ** 2) for i in range(STEPS)]
    return {
        "problems": problems, "loss_diff": loss_diff,
        "end_rel": relative(z_of[max_iter_to_alter], ref_after[max_iter_to_alter - 1]),
        "step_rel": max(relative(z_of[i], ref_inputs[i]) for i in range(STEPS)),
        "step0_iterations": len(record.steps[0].refinement_losses[0]), "step0_reference_losses": len(ref_losses[0]),
        "beyond_iterations": [len(s.refinement_losses[0]) for s in record.steps if s.step >= max_iter_to_alter],
    }

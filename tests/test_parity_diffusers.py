"""Parity of the A&E KSampler with diffusers' StableDiffusionAttendAndExcitePipeline (the reference port).

Both run the same tiny SD1 UNet (tests/harness/diffusers_twin.py) from the same initial latent z, with the
same text embeddings, DDIM with eta 0 over 50 steps, cfg 7.5 and the default A&E settings (25 altered steps,
refinement thresholds 0:0.05, 10:0.5, 20:0.8, at most 20 refinement iterations, scale factor 20, smoothing
sigma 0.5, kernel 3). The diffusers side runs outside inference mode (its gradient needs autograd); ours runs
under torch.inference_mode(), as ComfyUI runs nodes.

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
  design, so the test compares the latents each of the 50 steps starts from, not the outputs.
- diffusers evaluates the A&E loss at every step (it only skips the update after step 24); our record holds the
  25 altered steps only. Per diffusers step, `_compute_loss` is called for: the loss at the step's start, then
  (when refinement runs k iterations) the loss each iteration updates with (the first repeats the start loss)
  and the loss of the regular update. Our StepRecord holds the same as loss, refinement_losses and final_loss.

Size: at the 64x64 latent of SD1.5's 512x512 (16x16 maps at latent/4) one gradient forward of this UNet
costs ~8.5 CPU-s (its 4096-token self-attention), and each side needs ~70 of them (25 steps, refinement
to its 20-iteration limit at steps 10 and 20): ~30 minutes. A 16x16 latent with the loss read at latent/2
(8x8 maps; diffusers' attn_res (8, 8)) runs the same code paths at ~0.05 CPU-s per gradient forward. The runs
use one intra-op thread: tensors this small gain nothing from threads, and on the shared 2-core host two
threads made the diffusers run ~10x slower in wall time.
"""
import math

import comfy.sample
import comfy.samplers
import latent_preview
import pytest
import torch

from aande_pack.nodes.ae_options import ae_inputs
from aande_pack.nodes.ksampler_node import AEKSampler
from harness.diffusers_twin import attend_and_excite_pipeline, comfy_twin, diffusers_unet

STEPS, CFG, TOKENS = 50, 7.5, [2, 5]
LATENT = 16          # latent side; the loss reads the 8x8 cross-attention (latent/2)
SHARPEN = 2.0        # attn2.to_q gain: the step-0 loss starts above 0.95, so refinement runs and stops early
ALTERED = 25         # default max_iter_to_alter for 50 steps
TOL = 1e-3


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 4, LATENT, LATENT, generator=gen)
    cond, uncond = torch.randn(2, 1, 77, 768, generator=gen)
    return z, cond, uncond


def run_diffusers(pipe, z, cond, uncond):
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
    pipe(prompt=None, token_indices=TOKENS, height=LATENT * 8, width=LATENT * 8, num_inference_steps=STEPS,
         guidance_scale=CFG, latents=z.clone(), prompt_embeds=cond, negative_prompt_embeds=uncond,
         output_type="latent", callback=callback, attn_res=(LATENT // 2, LATENT // 2))
    return losses, torch.stack(starts), torch.stack(latents)


def run_ours(model, z, cond, uncond, sigmas, monkeypatch):
    """AEKSampler with the node's defaults; returns (the attention record, x at each callback, by step)."""
    s0 = float(sigmas[0])
    noise = z * math.sqrt(1 + s0 ** 2) / s0
    monkeypatch.setattr(comfy.sample, "prepare_noise", lambda latent, seed, batch_inds=None: noise.clone())
    xs = {}

    def callback(step, x0, x, total_steps):
        xs[step] = x.clone()

    monkeypatch.setattr(latent_preview, "prepare_callback", lambda model, steps, x0_output_dict=None: callback)
    ae = {name: spec[1]["default"] for name, spec in ae_inputs().items()}
    ae.update(token_indices=",".join(map(str, TOKENS)), attention_res="latent/2")
    with torch.inference_mode():
        _, record = AEKSampler().sample(model, 0, STEPS, CFG, "ddim", "ddim_uniform", [[cond, {}]], [[uncond, {}]],
                                        {"samples": torch.zeros_like(z)}, 1.0, **ae)
    return record, xs


def loss_sequence(step):
    """Our StepRecord in the order diffusers computes the losses of a step."""
    refined = step.refinement_losses[0]
    tail = (refined + [float(step.final_loss[0])]) if refined else []
    return [float(step.loss[0])] + tail


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.compat
def test_matches_diffusers_attend_and_excite(one_thread, monkeypatch):
    z, cond, uncond = inputs()
    unet = diffusers_unet(seed=0, sharpen=SHARPEN)
    pipe = attend_and_excite_pipeline(unet)
    model = comfy_twin(unet)

    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "ddim_uniform", STEPS)
    pipe.scheduler.set_timesteps(STEPS)
    alphabar = pipe.scheduler.alphas_cumprod[pipe.scheduler.timesteps]
    assert torch.allclose(sigmas[:-1], ((1 - alphabar) / alphabar).sqrt(), rtol=1e-5) and sigmas[-1] == 0

    ref_losses, ref_inputs, ref_after = run_diffusers(pipe, z, cond, uncond)
    record, xs = run_ours(model, z, cond, uncond, sigmas, monkeypatch)

    # losses of the 25 altered steps, refinement iterations included
    assert [s.step for s in record.steps] == list(range(ALTERED)) and all(s.updated for s in record.steps)
    loss_diff = 0.0
    for i, step in enumerate(record.steps):
        ours, ref = loss_sequence(step), ref_losses[i]
        assert len(ours) == len(ref), f"step {i}: {len(ours)} losses (ours) vs {len(ref)} (diffusers)"
        loss_diff = max(loss_diff, max(abs(a - b) for a, b in zip(ours, ref)))
    # refinement ran at step 0 in both and stopped on its threshold (0.05) before its 20 iterations
    iterations = len(record.steps[0].refinement_losses[0])
    assert 0 < iterations < 20 and len(ref_losses[0]) == iterations + 2

    # z after step 24 ends the A&E phase (= x at callback 25, as step 25 alters nothing)
    z_of = [xs[i] / math.sqrt(1 + float(sigmas[i]) ** 2) for i in range(STEPS)]
    end_diff = relative(z_of[ALTERED], ref_after[ALTERED - 1])
    # and every step's update starts from the same latent, after A&E in the altered steps
    step_diff = max(relative(z_of[i], ref_inputs[i]) for i in range(STEPS))
    measured = (f"max loss diff {loss_diff:.2e}, step-0 refinement iterations {iterations}, z after step 24 "
                f"rel. L2 {end_diff:.2e}, max over the 50 steps' starting latents {step_diff:.2e}")
    print(f"\nA&E parity: {measured}")
    assert loss_diff < TOL and end_diff < TOL and step_diff < TOL, measured

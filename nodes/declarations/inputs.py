"""The A&E inputs shared by the A&E nodes, with the paper's defaults and tooltips, and the settings they make."""
from __future__ import annotations

from ...aande_core.config import ATTENTION_RES, MEMORY_SAVING, NORMALIZE_EOT, AESettings, parse_thresholds
from ...aande_core.selection import parse_indices

_D = AESettings()
_THRESHOLDS = ", ".join(f"{s}:{t:g}" for s, t in _D.thresholds)


def ae_inputs() -> dict:
    return {
        "token_indices": ("STRING", {"default": "", "tooltip":
            "Subject token indices such as '2,5' (0 is the start token). Leave empty to use the subjects of "
            "'Select Subject Tokens', which its CONDITIONING carries; typed indices override them."}),
        "attend_and_excite": ("BOOLEAN", {"default": True, "label_on": "on", "label_off": "off (record only)",
            "tooltip": "Off: standard sampling that still records the subjects' attention, for a "
                       "standard-vs-A&E comparison with the same seed."}),
        "max_iter_to_alter": ("INT", {"default": _D.max_iter_to_alter, "min": 0, "max": 1000, "tooltip":
            "The regular A&E update runs at the first N steps, counted in steps of 50 (paper: 25) and scaled to "
            "the run's step count, e.g. 10 of 20 steps. Refinement still runs at its threshold steps beyond N, "
            "as in the reference."}),
        "scale_factor": ("FLOAT", {"default": _D.scale_factor, "min": 0.0, "max": 1000.0, "step": 0.5, "tooltip":
            "Gradient step size: step_i = scale_factor * sqrt(scale at step i) (paper: 20)."}),
        "scale_range_start": ("FLOAT", {"default": _D.scale_range[0], "min": 0.0, "max": 10.0, "step": 0.05,
            "tooltip": "Step-size scale at the first step, falling linearly to scale_range_end at the last (paper: 1.0)."}),
        "scale_range_end": ("FLOAT", {"default": _D.scale_range[1], "min": 0.0, "max": 10.0, "step": 0.05,
            "tooltip": "Step-size scale at the last step (paper: 0.5)."}),
        "thresholds": ("STRING", {"default": _THRESHOLDS, "tooltip":
            "Iterative refinement: at step S (of 50, scaled to the run) keep updating while the loss is above "
            "1 - threshold. Empty: no refinement (faster)."}),
        "max_refinement_steps": ("INT", {"default": _D.max_refinement_steps, "min": 0, "max": 200, "tooltip":
            "Most refinement iterations per refinement step (paper: 20)."}),
        "smooth_attentions": ("BOOLEAN", {"default": _D.smooth_attentions, "tooltip":
            "Gaussian-smooth each subject's attention map before taking its maximum (paper: on)."}),
        "sigma": ("FLOAT", {"default": _D.sigma, "min": 0.05, "max": 10.0, "step": 0.05, "tooltip":
            "Smoothing sigma, in the reference's kernel convention (paper: 0.5)."}),
        "kernel_size": ("INT", {"default": _D.kernel_size, "min": 1, "max": 15, "step": 2, "tooltip":
            "Smoothing kernel size, odd (paper: 3)."}),
        "attention_res": (list(ATTENTION_RES), {"default": "auto", "tooltip":
            "Resolution of the cross-attention maps the loss reads. auto = latent/4 (16x16 for 512x512 SD1.5, "
            "32x32 for 1024x1024 SDXL)."}),
        "normalize_eot": (list(NORMALIZE_EOT), {"default": "auto", "tooltip":
            "Softmax over the prompt's own tokens only (on), or over all 75 text positions incl. end/padding "
            "(off, the paper's SD1.4 setting). auto: on for SD2.x models, as the reference does."}),
    }


def optional_inputs(legacy_tokens: bool = True) -> dict:
    """Inputs a workflow or API prompt saved before they existed may lack (optional, so those still load)."""
    out = {
        "memory_saving": (list(MEMORY_SAVING), {"default": "auto", "tooltip":
            "The gradient pass recomputes the residual blocks' and feed-forward layers' activations in its backward "
            "instead of keeping them: less VRAM for the pass, slower passes. auto: when ComfyUI's free VRAM is below "
            "what the normal pass needs."}),
        "compile_pass": ("BOOLEAN", {"default": False, "label_on": "on", "label_off": "off", "tooltip":
            "Compile the gradient pass with torch.compile (needs a CUDA GPU and Triton): 13-17% faster passes, "
            "after a pause in the first A&E run of each model architecture, size and batch in a ComfyUI session "
            "(15 s to 5 min, less once Inductor's disk cache has it); later runs reuse it. Same result within "
            "fp16 rounding."}),
    }
    if legacy_tokens:
        out["subject_tokens"] = ("AE_TOKENS", {"tooltip":
            "Deprecated: the CONDITIONING of 'Select Subject Tokens' carries the subjects. Kept so that workflows "
            "saved with it still load; used only when the positive conditioning carries no selection."})
    return out


def settings_from(kw: dict) -> AESettings:
    """The node's A&E inputs (names as in ae_inputs()) as one settings object."""
    return AESettings(
        attend_and_excite=kw["attend_and_excite"], token_indices=parse_indices(kw["token_indices"]),
        max_iter_to_alter=kw["max_iter_to_alter"], scale_factor=kw["scale_factor"],
        scale_range=(kw["scale_range_start"], kw["scale_range_end"]),
        thresholds=parse_thresholds(kw["thresholds"]), max_refinement_steps=kw["max_refinement_steps"],
        smooth_attentions=kw["smooth_attentions"], sigma=kw["sigma"], kernel_size=kw["kernel_size"],
        attention_res=kw["attention_res"], normalize_eot=kw["normalize_eot"],
        memory_saving=kw.get("memory_saving", "auto"), compile_pass=kw.get("compile_pass", False))

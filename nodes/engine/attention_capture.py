"""Capture cross-attention probabilities through ComfyUI's attn2 replace patches.

The patches go into a copy of model_options, never onto the model. An existing replace patch on the same
block (IPAdapter and the like) keeps running: A&E computes the probabilities from the q and k it is given
and leaves the output to that patch. In a gradient pass every other attention also gets a differentiable
implementation (some backends have no backward), and the forward stops right after the last layer the
loss reads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...aande_core.attention import AttentionAccumulator
from .. import compat


class StopForward(Exception):
    """Raised after the last captured layer: the rest of the UNet is not needed for the loss."""


def attention_probs(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads*d) x (B, C, heads*d) -> (B, heads, N, C) softmax probabilities in float32."""
    b, n, inner = q.shape
    d = inner // heads
    qh = q.float().view(b, n, heads, d).transpose(1, 2)
    kh = k.float().view(b, -1, heads, d).transpose(1, 2)
    return torch.softmax((qh @ kh.transpose(-1, -2)) * d ** -0.5, dim=-1)


def _merge_heads(out: torch.Tensor) -> torch.Tensor:
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def differentiable_attention(q, k, v, extra_options):
    """Scaled dot-product attention with a backward on every device, honouring fp32 attention precision."""
    call = compat.attention_call(extra_options)
    heads = call["heads"]
    b, n, inner = q.shape
    d = inner // heads
    dtype = torch.float32 if call["precision"] == torch.float32 else q.dtype
    qh, kh, vh = (t.to(dtype).view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    return _merge_heads(F.scaled_dot_product_attention(qh, kh, vh)).to(v.dtype)


class AttentionCapture:
    """Collects the mean attention over the capture layers for one forward at a time.

    grad=True: gradient pass on positive conditioning only; stops after the last key.
    grad=False: recording inside the ordinary CFG forward; only the positive rows are read, and only
    while armed.
    """

    def __init__(self, keys, map_hw, grad: bool):
        self.keys = list(keys)
        self.map_hw = tuple(map_hw)
        self.grad = grad
        self.armed = grad
        self.accumulator = AttentionAccumulator()

    def begin(self):
        self.accumulator = AttentionAccumulator()
        self.armed = True

    def end(self):
        if not self.grad:
            self.armed = False
        return self.accumulator.mean()

    def patch(self, model_options: dict, all_keys=(), separate_skips=False) -> dict:
        """A copy of model_options with the capture (and, for a gradient pass, attn1/attn2 fallbacks).

        separate_skips: ComfyUI adds ControlNet outputs to the stored skip connections in place, after the next
        block has saved them for backward; the next block then gets a copy of each input block's output.
        """
        opts, replace = compat.replace_patches(model_options)
        if separate_skips:
            compat.add_block_patch(opts, compat.SKIP_PATCH, _copy_after_skip)
        attn2 = replace.setdefault("attn2", {})
        if self.grad:
            attn1 = replace.setdefault("attn1", {})
            for key in all_keys:
                if compat.lookup_replace(attn1, key) is None:
                    attn1[key] = differentiable_attention
                if key not in self.keys and compat.lookup_replace(attn2, key) is None:
                    attn2[key] = differentiable_attention
        last = self.keys[-1]
        for key in self.keys:
            attn2[key] = _CapturePatch(self, compat.lookup_replace(attn2, key), stop=self.grad and key == last)
        return opts

    def rows(self, batch: int, cond_or_uncond) -> slice | torch.Tensor | None:
        """The batch rows of the positive prompt: all of them in a gradient pass; in a CFG forward the chunks
        ComfyUI marks 0 (cond); None when this call has none."""
        if self.grad:
            return slice(None)
        per = batch // len(cond_or_uncond)
        rows = [r for i, c in enumerate(cond_or_uncond) if c == 0 for r in range(i * per, (i + 1) * per)]
        return torch.tensor(rows, dtype=torch.long) if rows else None


def _copy_after_skip(h, transformer_options):
    return h.clone()


class _CapturePatch:
    def __init__(self, capture: AttentionCapture, previous, stop: bool):
        self.capture, self.previous, self.stop = capture, previous, stop

    def __call__(self, q, k, v, extra_options):
        cap = self.capture
        probs = None
        if cap.armed:
            call = compat.attention_call(extra_options)
            rows = cap.rows(q.shape[0], call["cond_or_uncond"])
            if rows is not None:
                probs = attention_probs(q[rows], k[rows], call["heads"])
                cap.accumulator.add(probs, call["hw"] or cap.map_hw)
                if self.stop:
                    raise StopForward
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        if cap.grad:
            # the probabilities are already there: reuse them (differentiable) instead of a second attention
            b, n, inner = v.shape
            vh = v.float().view(b, n, probs.shape[1], -1).transpose(1, 2)
            return _merge_heads(probs @ vh).to(v.dtype)
        return compat.host_attention(q, k, v, extra_options)

"""What the SDXL 1024x1024 batch-1 gradient pass's matrix products could cost in other forms, timed as the pass runs
them: inside a CUDA graph, one product per transformer block for 60 blocks, each block with its own weights (so
they come from memory, not from L2), timed by CUDA events over graph replays. docs/benchmarks.md step 20 inferred
these costs from a profile; step 23 measures them before any is built into the pass.

    python3 -m bench.product_probe --out $OUT/product_probe.json [--triton]

Cases, per block at the 32x32 level (1,024 tokens, 1,280 channels, 20 heads of 64, 77 text tokens):
- q, k, v of a self-attention as three products against one with the three weights side by side (N = 3,840); their
  input gradients as three products and two additions against one product over K = 3,840 (the concatenation of the
  three output gradients included, since the attention's backward gives them apart);
- the attention capture's q @ k^T (fp16 values, float32 results: nodes/engine/attention_capture.py): float32
  products of the upcast operands, as now, against fp16 tensor-core products with float32 results (`out_dtype`),
  which add the same exact fp16 products in float32, in another order;
- with --triton, the 1280-wide products as Inductor's autotuned Triton kernels (max-autotune, Triton only): its
  autotuning picks by times taken outside a graph, where a cuBLAS call's CPU cost counts; here only the GPU's does.
  Each compiles in 15 to 50 s.
GPU only. Prints a table; writes the JSON (medians, per block, in microseconds, with TFLOP/s and the machine).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import PEAK_TFLOPS

BLOCKS, TOKENS, CHANNELS, HEADS, TEXT = 60, 1024, 1280, 20, 77


def per_block_us(step, replays: int = 20) -> float:
    """Median over replays of one CUDA graph holding step(i) for every block i, divided by the blocks."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (cuBLAS workspaces, Triton's first launch)
        for i in range(3):
            step(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(BLOCKS):
            step(i)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / BLOCKS)
    del graph
    return statistics.median(times)


def cases(triton: bool) -> dict:
    """name -> (step(i) -> None, GFLOP per block)."""
    dev, half = torch.device("cuda"), torch.float16
    torch.manual_seed(0)
    x = torch.randn(TOKENS, CHANNELS, device=dev, dtype=half)
    qkv = [torch.randn(3 * CHANNELS, CHANNELS, device=dev, dtype=half) * 0.03 for _ in range(BLOCKS)]
    w = [[block[j * CHANNELS:(j + 1) * CHANNELS].clone() for j in range(3)] for block in qkv]
    grads = [torch.randn(TOKENS, CHANNELS, device=dev, dtype=half) for _ in range(3)]
    d = CHANNELS // HEADS
    q = torch.randn(HEADS, TOKENS, d, device=dev, dtype=half)
    k = torch.randn(HEADS, TEXT, d, device=dev, dtype=half)
    three = 3 * 2 * TOKENS * CHANNELS * CHANNELS / 1e9
    capture = 2 * HEADS * TOKENS * TEXT * d / 1e9
    out = {
        "qkv forward, 3 products": (lambda i: [F.linear(x, w[i][j]) for j in range(3)], three),
        "qkv forward, 1 product (N=3840)": (lambda i: F.linear(x, qkv[i]), three),
        "qkv input gradient, 3 products + 2 adds": (
            lambda i: grads[0] @ w[i][0] + grads[1] @ w[i][1] + grads[2] @ w[i][2], three),
        "qkv input gradient, concatenation + 1 product (K=3840)": (
            lambda i: torch.cat(grads, dim=1) @ qkv[i], three),
        "capture q @ k^T, float32 of upcast operands (now)": (
            lambda i: torch.bmm(q.float(), k.float().transpose(1, 2)), capture),
        "capture q @ k^T, fp16 tensor cores, float32 out": (
            lambda i: torch.bmm(q, k.transpose(1, 2), out_dtype=torch.float32), capture),
    }
    if triton:
        options = {"max_autotune_gemm": True, "max_autotune_gemm_backends": "TRITON"}
        linear = torch.compile(F.linear, options=options, dynamic=False)
        input_grad = torch.compile(torch.mm, options=options, dynamic=False)
        out["qkv forward, 3 products, Triton"] = (lambda i: [linear(x, w[i][j]) for j in range(3)], three)
        out["qkv forward, 1 product (N=3840), Triton"] = (lambda i: linear(x, qkv[i]), three)
        out["qkv input gradient, 3 products + 2 adds, Triton"] = (
            lambda i: input_grad(grads[0], w[i][0]) + input_grad(grads[1], w[i][1]) + input_grad(grads[2], w[i][2]),
            three)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--triton", action="store_true", help="add Inductor's autotuned Triton products (minutes)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.product_probe times CUDA graphs: it needs a CUDA GPU")
    rows = []
    for name, (step, gflop) in cases(args.triton).items():
        started = time.perf_counter()
        us = per_block_us(step)
        rows.append({"case": name, "us_per_block": round(us, 2), "ms_per_60_blocks": round(us * BLOCKS / 1000, 3),
                     "tflops": round(gflop / us * 1e3, 1), "of_peak": round(gflop / us * 1e3 / PEAK_TFLOPS, 3),
                     "seconds_with_compilation": round(time.perf_counter() - started, 1)})
        print(f"{name:58s} {us:8.2f} us/block {rows[-1]['tflops']:7.1f} TFLOP/s {100 * rows[-1]['of_peak']:5.1f}%",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                    "blocks": BLOCKS, "peak_tflops": PEAK_TFLOPS, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

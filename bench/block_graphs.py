"""Whether dynamo can compile the UNet's transformer blocks as the A&E gradient pass calls them: the next attempt at
the pass's MFU targets (docs/benchmarks.md, step 14) compiles whole blocks, and that only pays if a block is one
graph. Inside a real A&E pass (the first gradient pass of a run, on the CPU, the test harness's tiny models), each
transformer block's forward is traced once with torch._dynamo.explain, and its graphs, graph breaks and the
reasons are printed. The block with the last capture layer ends the truncated forward by raising StopForward;
it is reported as such.

    python3 -m bench.block_graphs [--comfyui PATH] [--arch sd15|sdxl]
"""
from __future__ import annotations

import argparse

import torch
from harness import host, models

from . import ae_bench


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui")
    p.add_argument("--arch", default="sd15", choices=["sd15", "sdxl"])
    args = p.parse_args()
    host.import_pack()
    host.import_comfy(host.find_comfyui(args.comfyui), cpu=True)
    import comfy.utils
    import torch._dynamo
    from comfy.ldm.modules.attention import BasicTransformerBlock

    from aande_pack.nodes.engine.attention_capture import StopForward
    comfy.utils.PROGRESS_BAR_ENABLED = False
    arch = ae_bench.archs(quick=True)[args.arch]
    plan = ae_bench.Plan(device=torch.device("cpu"), dtype=torch.float32, steps=1, batches=(1,), repeats=1,
                         warmup_steps=0, budget_s=float("inf"), cases=set())
    model = models.make_model(arch.kind, seed=0, sharpen=6.5)
    names = {m: n for n, m in model.model.diffusion_model.named_modules() if isinstance(m, BasicTransformerBlock)}
    rows = []

    def trace(block, call_args, call_kwargs):
        if not torch.is_grad_enabled() or any(r[0] == names[block] for r in rows):
            return  # only the gradient pass, each block once
        try:
            ex = torch._dynamo.explain(block.forward)(*call_args, **call_kwargs)
        except StopForward:
            rows.append((names[block], "-", "-", "ends the pass (StopForward)"))
            return
        reasons = "; ".join(str(r.reason).splitlines()[0] for r in ex.break_reasons) or "-"
        rows.append((names[block], str(ex.graph_count), str(ex.graph_break_count), reasons))

    hooks = [b.register_forward_pre_hook(trace, with_kwargs=True) for b in names]
    try:
        ae_bench.ComfyRunner(plan, arch, model).ae(1, 1, {"thresholds": ""})
    finally:
        for hook in hooks:
            hook.remove()
    print(f"Transformer blocks of the {args.arch} test model's gradient pass, traced by dynamo (torch "
          f"{torch.__version__})\n\n| block | graphs | graph breaks | reasons |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

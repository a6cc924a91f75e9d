"""The benchmark keeps the pack's warnings (bench/ae_bench.py, PackWarnings): a run on the GPU machine whose pass
could not be compiled or captured says why in the benchmark's JSON and table, each distinct line once, though its
log may not come back."""
import json
import logging

import torch

from bench.ae_bench import Bench, PackWarnings, Plan

from aande_pack.aande_core.objective import PassResult
from aande_pack.nodes.engine.graphed_pass import GraphedPass


def test_a_pass_left_uncompiled_and_uncaptured_puts_both_reasons_once_in_the_json_and_the_table(tmp_path):
    plan = Plan(device=torch.device("cpu"), dtype=torch.float32, steps=1, batches=(1,), repeats=1, warmup_steps=0,
                budget_s=1.0, cases=set())
    bench = Bench(plan, tmp_path / "ae_bench.json", meta={})
    logger = logging.getLogger("attend_and_excite")
    handler = PackWarnings(bench.results["pack_warnings"])
    logger.addHandler(handler)

    def eager(z, sigma):
        return PassResult(z.sum(), z * sigma, z, z)

    def compile_(z, sigma, expected):
        raise RuntimeError("no Triton here")

    try:
        for _ in range(2):  # two runs with the same reasons
            graphed = GraphedPass(eager, compile_)
            for _ in range(3):  # eager, then the failed compilation (eager), then the capture (no CUDA here: eager)
                graphed(torch.ones(2), torch.full((1,), 2.0))
            assert graphed.failed and not graphed.compiled
    finally:
        logger.removeHandler(handler)
    bench.save()

    warnings = json.loads((tmp_path / "ae_bench.json").read_text())["pack_warnings"]
    assert len(warnings) == 2, warnings
    assert "could not be compiled (RuntimeError: no Triton here)" in warnings[0]
    assert "could not be captured in a CUDA graph" in warnings[1]
    table = (tmp_path / "ae_bench.md").read_text()
    assert all(f"Pack warning: {w}" in table for w in warnings)

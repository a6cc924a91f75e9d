"""Which UNet blocks A&E sampling runs, counted with hooks (issue 7): a gradient forward stops after the last
layer its loss reads, no forward result goes unused, and a batch shares one gradient forward per evaluation.

ComfyUI runs each block through forward_timestep_embed, which calls the block's layers but not the block
module itself, so a block's execution is seen by a pre-hook on its first layer. Expected counts come from the
attention record (refinement iterations per A&E step) and the step count.
"""
import pytest
import torch

from harness.ae_run import run_node
from harness.models import make_conditioning, make_model

STEPS = 10      # divides 1000, so ddim_uniform gives exactly 10 sampler steps
SIDE = 16       # latent side: the loss reads the factor-4 layers, 4x4 maps
FACTOR = 4


class BlockTrace:
    """Per call of the UNet: grad mode, batch, timestep, blocks started, whether `out` ran, backward passes;
    and per cross-attention layer the number of query tokens it saw."""

    def __init__(self, unet):
        self.calls, self.queries, self.handles = [], {}, []
        self.handles.append(unet.register_forward_pre_hook(self._call))
        blocks = [(("input", i), b) for i, b in enumerate(unet.input_blocks)] + [(("middle", 0), unet.middle_block)]
        blocks += [(("output", i), b) for i, b in enumerate(unet.output_blocks)]
        self.all_blocks = [name for name, _ in blocks]
        for name, block in blocks:
            self.handles.append(block[0].register_forward_pre_hook(lambda m, a, name=name: self._block(name)))
        self.handles.append(unet.out.register_forward_hook(lambda m, a, o: self.calls[-1].update(out=True)))
        self.handles.append(unet.input_blocks[0][0].register_forward_hook(self._first_layer))
        for name, module in unet.named_modules():
            if name.endswith("attn2.to_q"):
                self.handles.append(module.register_forward_hook(
                    lambda m, a, o, block=block_of(name): self.queries.setdefault(block, set()).add(a[0].shape[1])))

    def _call(self, module, args):
        self.calls.append({"grad": torch.is_grad_enabled(), "batch": args[0].shape[0], "t": float(args[1][0]),
                           "blocks": [], "out": False, "backward": 0})

    def _block(self, name):
        self.calls[-1]["blocks"].append(name)

    def _first_layer(self, module, args, out):
        call = self.calls[-1]
        if out.requires_grad:
            out.register_hook(lambda grad: call.update(backward=call["backward"] + 1))

    def remove(self):
        for handle in self.handles:
            handle.remove()


def block_of(module_name):
    """("input", 4) for "input_blocks.4.1.transformer_blocks.0.attn2.to_q"; ("middle", 0) for the middle block."""
    head, _, rest = module_name.partition(".")
    part = head.split("_")[0]
    return part, 0 if part == "middle" else int(rest.split(".")[0])


@pytest.fixture(scope="module")
def sd1():
    return make_model("sd1", seed=0, sharpen=6.5)


CASES = [pytest.param((1, dict(thresholds="")), id="b1-no-refinement"),
         pytest.param((1, dict(max_refinement_steps=4)), id="b1-refinement"),
         pytest.param((4, dict(max_refinement_steps=4)), id="b4-refinement"),
         # 10 steps: the regular update at steps 0..2, refinement at 0, 2 and 4 (step 4 without the update)
         pytest.param((1, dict(max_iter_to_alter=15, max_refinement_steps=4, thresholds="0:0.05, 10:0.5, 20:1.0")),
                      id="b1-refinement-beyond-max-iter")]


@pytest.fixture(scope="module", params=CASES)
def traced(request, sd1):
    """(batch, A&E overrides, trace, record) of one A&E KSampler run with ddim + ddim_uniform."""
    batch, ae = request.param
    trace = BlockTrace(sd1.model.diffusion_model)
    try:
        out, record = run_node(sd1, make_conditioning("sd1", 1), make_conditioning("sd1", 2),
                               {"samples": torch.zeros(batch, 4, SIDE, SIDE)}, steps=STEPS, sampler_name="ddim",
                               scheduler="ddim_uniform", token_indices="2,5", **ae)
    finally:
        trace.remove()
    assert torch.isfinite(out).all()
    return batch, ae, trace, record


def by_step(calls):
    """Calls grouped by sampler step: each step evaluates the UNet at its own timestep."""
    order = list(dict.fromkeys(c["t"] for c in calls))
    return [[c for c in calls if c["t"] == t] for t in order]


def expected_gradient_forwards(record, step):
    """One forward for the step's loss, plus one per refinement iteration (the batch refines together while any
    sample is still above its target, so the iterations are the longest per-sample list), less one at a
    refinement step without the regular update (the last refinement update is not followed by a forward)."""
    recorded = {s.step: s for s in record.steps}
    if step not in recorded:
        return 0
    iterations = max(recorded[step].refinement_iterations)
    regular = recorded[step].final_loss is not None
    return 1 + iterations - (0 if regular or not iterations else 1)


def test_gradient_forwards_stop_after_the_last_read_layer(sd1, traced):
    _, _, trace, _ = traced
    # the output block holding the last cross-attention layer at latent/4, from the query lengths seen
    needed = (SIDE // FACTOR) ** 2
    last = max(i for (part, i), tokens in trace.queries.items() if part == "output" and needed in tokens)
    assert last < len(sd1.model.diffusion_model.output_blocks) - 1  # later output blocks exist to be skipped
    through_last = trace.all_blocks[:trace.all_blocks.index(("output", last)) + 1]
    grad_calls = [c for c in trace.calls if c["grad"]]
    assert grad_calls
    for call in grad_calls:
        assert call["blocks"] == through_last and not call["out"]
    for call in trace.calls:
        if not call["grad"]:
            assert call["blocks"] == trace.all_blocks and call["out"]


def test_every_forward_is_used_and_a_batch_shares_it(traced):
    batch, ae, trace, record = traced
    steps = by_step(trace.calls)
    assert len(steps) == STEPS
    assert 0 < len(record.steps) < STEPS  # A&E steps, and plain steps after them
    if "max_iter_to_alter" in ae:
        assert [s.step for s in record.steps] == [0, 1, 2, 4] and record.steps[-1].final_loss is None
        assert max(record.steps[-1].refinement_iterations) == 4  # threshold 1.0: it runs to the limit
    if ae.get("thresholds") == "":
        assert all(not losses for s in record.steps for losses in s.refinement_losses)
    else:
        assert any(losses for s in record.steps for losses in s.refinement_losses)
    for i, calls in enumerate(steps):
        grad = [c for c in calls if c["grad"]]
        plain = [c for c in calls if not c["grad"]]
        assert len(grad) == expected_gradient_forwards(record, i), f"step {i}"
        # each gradient forward sees the whole batch once and is differentiated exactly once
        assert all(c["batch"] == batch and c["backward"] == 1 for c in grad), f"step {i}"
        # one CFG forward per step, cond and uncond in one batch, after the step's A&E update
        assert len(plain) == 1 and plain[0]["batch"] == 2 * batch and plain[0]["backward"] == 0, f"step {i}"
        assert calls[-1] is plain[0], f"step {i}"

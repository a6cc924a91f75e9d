"""The compiled gradient pass (nodes/engine/compiled_pass.py), on the CPU with the tiny SD1 model: the pass traced
with every tensor it reads lifted into inputs gives the eager pass's loss, gradient and maps at other latents and
sigmas; a later run of the same structure (another prompt, another model of the same architecture) reuses the
compiled graph without tracing, with its own tensors, and another batch size does not; a graph that does not fit
its run is compiled anew; a run with compile_pass on goes through the compilation in its second pass; a failed
compilation is logged and the pass runs uncompiled, with each GroupNorm compiled as without compile_pass; the NHWC
GroupNorm is traced as plain operations.
torch.compile runs with the "aot_eager" backend here (the traced graph, no generated code); Inductor's kernels and
their speed need a GPU: `bench.gpu_checks --compile-pass`, `bench.ae_bench --compile-pass`."""
import functools
import gc
import logging
import weakref

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from harness.ae_run import ae_defaults, run_node
from harness.models import make_conditioning, make_model

from aande_pack.nodes import compat
from aande_pack.nodes.declarations.inputs import settings_from
from aande_pack.nodes.engine import compiled_pass, gradient_pass, graphed_pass, nhwc_norm, patch
from aande_pack.nodes.engine.graphed_pass import GraphedPass
from aande_pack.nodes.engine.observer import RunObserver

MODEL = functools.cache(lambda seed=0: make_model("sd1", seed=seed, sharpen=6.5))


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled_pass, "BACKEND", "aot_eager")


class Checked(Exception):
    """Ends a run once the observer has checked its pass."""


class CompileAndCompare(RunObserver):
    """At the first A&E step: compiles the run's pass as its CUDA graph would (checked against the eager pass at the
    step's latent) and compares it with the eager pass at two other latents and sigmas."""

    def step_started(self, run, step, z, sigma):
        gradient_pass = run.gradient_pass
        self.compiled = gradient_pass._compiled(z, sigma, gradient_pass.eager(z, sigma))
        gen = torch.Generator().manual_seed(step)
        self.results = []
        for scale, factor in ((0.3, 0.8), (1.0, 1.7)):
            zi = z + scale * torch.randn(z.shape, generator=gen)
            self.results.append((gradient_pass.eager(zi, sigma * factor), self.compiled(zi, sigma * factor)))
        self.positive, self.gradient_pass = gradient_pass.positive, gradient_pass
        raise Checked


def compile_run(batch=1, prompt_seed=1, model_seed=0):
    observer = CompileAndCompare()
    settings = settings_from(ae_defaults(token_indices="2,5", thresholds=""))
    with pytest.raises(Checked), torch.inference_mode():
        patch.ksample(MODEL(model_seed), 0, 4, 7.5, "euler", "normal", make_conditioning("sd1", prompt_seed),
                      make_conditioning("sd1", 2), {"samples": torch.zeros(batch, 4, 16, 16)}, 1.0, settings, observer)
    return observer


@pytest.fixture(scope="module")
def runs():
    """Four runs, counting the traces and the structures compiled after each."""
    traces, counts = [], []
    original = compiled_pass.make_fx
    compiled_pass._COMPILED.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiled_pass, "BACKEND", "aot_eager")
        mp.setattr(compiled_pass, "make_fx", lambda *a, **k: traces.append(1) or original(*a, **k))
        observers = {}
        for name, kw in (("first", {}), ("prompt", dict(prompt_seed=3)), ("model", dict(model_seed=1)),
                         ("batch2", dict(batch=2))):
            observers[name] = compile_run(**kw)
            counts.append((len(traces), len(compiled_pass._COMPILED)))
    return observers, counts


def test_the_compiled_pass_gives_the_eager_loss_gradient_and_maps_at_other_latents_and_sigmas(runs):
    observers, _ = runs
    for observer in observers.values():
        for eager, compiled in observer.results:
            for name in ("loss", "grad", "token_maps", "subject_maps"):
                torch.testing.assert_close(getattr(compiled, name), getattr(eager, name), rtol=1e-5, atol=1e-6)
        assert not torch.equal(observer.results[0][0].loss, observer.results[1][0].loss)  # the latent moves the loss


def test_a_later_run_of_the_same_structure_reuses_the_graph_with_its_own_prompt_and_weights(runs):
    observers, counts = runs
    # (traces so far, structures compiled): another prompt and another model of the same architecture reuse the
    # first run's graph without tracing; batch 2 is another structure
    assert counts == [(1, 1), (1, 1), (1, 1), (2, 2)]
    first, prompt, model = observers["first"], observers["prompt"], observers["model"]
    assert prompt.compiled.fn is first.compiled.fn and model.compiled.fn is first.compiled.fn
    assert observers["batch2"].compiled.fn is not first.compiled.fn
    for observer, seed in ((first, 0), (prompt, 0), (model, 1)):  # each run's graph reads that run's tensors
        bound = {t.data_ptr() for t in observer.compiled.constants}
        unet = MODEL(seed).model.diffusion_model
        assert all(p.data_ptr() in bound for p in unet.input_blocks[1][1].parameters())
        context = observer.positive[0]["model_conds"]["c_crossattn"].cond
        assert context.data_ptr() in bound
    assert not torch.equal(first.results[0][0].loss, model.results[0][0].loss)  # other weights, another result


def test_the_text_keys_and_values_are_computed_once_per_run_outside_the_compiled_graph(runs):
    """run_constants.py: each cross-attention layer the pass runs projects the text into keys and values, two
    products on constants alone, all but the last captured layer's values (the pass stops before reading them)."""
    observers, _ = runs
    first = observers["first"]
    layers = [key for key, _ in compat.cross_attention_layers(MODEL().model.diffusion_model)]
    passed = layers.index(first.gradient_pass.capture.keys[-1]) + 1
    split = next(e for e in compiled_pass._COMPILED.values() if e.fn is first.compiled.fn).split
    products = [n for n in split.prelude.graph.nodes if n.target == torch.ops.aten.mm.default]
    assert len(products) == 2 * passed - 1
    context = first.positive[0]["model_conds"]["c_crossattn"].cond
    assert all(c.data_ptr() != context.data_ptr() for c in first.compiled.inputs)  # read by the prelude only


def test_no_value_computed_once_per_run_outlives_its_run():
    """The compiled graph, kept for later runs, holds none of a run's split-off results (the text's keys and values):
    they go with the run's pass."""
    observer = compile_run(prompt_seed=5)
    kept = len(next(e for e in compiled_pass._COMPILED.values() if e.fn is observer.compiled.fn).split.kept)
    values = [weakref.ref(t) for t in observer.compiled.inputs[kept:]]
    assert values
    del observer
    gc.collect()
    assert all(value() is None for value in values)


def test_describe_names_every_tensor_and_keeps_values_out_of_the_structure_but_not_settings():
    model = torch.nn.Linear(2, 3)
    cond = {"context": torch.randn(1, 77, 8), "strength": 1.0}
    structure, tensors = compiled_pass.describe(model, positive=[cond], objective={"cols": [2, 5]})
    assert tensors["model.weight"] is model.weight and tensors["positive.0.context"] is cond["context"]
    other_values = compiled_pass.describe(model, positive=[{"context": torch.randn(1, 154, 8), "strength": 1.0}],
                                          objective={"cols": [2, 5]})[0]
    assert other_values == structure  # another prompt, even another length: the bound inputs' layouts decide
    for positive, objective in (([{"context": torch.randn(1, 77, 8), "strength": 0.5}], {"cols": [2, 5]}),
                                ([cond], {"cols": [2, 6]}),
                                ([cond], {"cols": [2, 5], "extra": print})):
        assert compiled_pass.describe(model, positive=positive, objective=objective)[0] != structure
    assert compiled_pass.describe(torch.nn.Linear(2, 4), positive=[cond], objective={"cols": [2, 5]})[0] != structure


def test_a_graph_that_does_not_fit_its_run_is_compiled_anew_and_a_wrong_one_refused(caplog):
    weight = torch.tensor([0.5, -1.0, 2.0, 1.0])

    def eager(scale, turn=1.0):
        def pass_(z, sigma):
            loss = (z * weight).sum().reshape(1) * sigma * scale
            return compiled_pass.PassResult(loss, z * weight * turn, z, z)
        return pass_

    compiled_pass._COMPILED.clear()
    z, sigma = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5])  # loss 4.25 x scale
    structure, tensors = ("toy",), {"weight": weight}
    first = compiled_pass.compiled_pass(eager(1.0), z, sigma, eager(1.0)(z, sigma), structure, tensors)
    # the same structure and tensors, but the pass differs (what `describe` would have to miss): compiled anew
    with caplog.at_level(logging.INFO, logger="attend_and_excite"):
        second = compiled_pass.compiled_pass(eager(1.001), z, sigma, eager(1.001)(z, sigma), structure, tensors)
    assert any("does not fit this one" in r.getMessage() for r in caplog.records)
    assert second.fn is not first.fn
    torch.testing.assert_close(second(z, sigma).loss, torch.tensor([4.25 * 1.001]))
    with pytest.raises(compiled_pass.CompiledPassMismatch, match="loss differs by 8.50e"):
        compiled_pass.compiled_pass(eager(3.0), z, sigma, eager(1.0)(z, sigma), ("loss",), tensors)
    with pytest.raises(compiled_pass.CompiledPassMismatch, match="gradient cosine -1.000"):
        compiled_pass.compiled_pass(eager(1.0, turn=-1.0), z, sigma, eager(1.0)(z, sigma), ("gradient",), tensors)


def test_lifting_turns_each_constant_into_one_input_and_keeps_the_result():
    weight, bias = torch.randn(3, 3), torch.randn(3)
    gm = make_fx(lambda x: (x @ weight + bias) * (x @ weight).sum(), tracing_mode="real")(torch.randn(2, 3))
    x = torch.randn(2, 3)
    expected = gm(x)
    constants = compiled_pass.lift_constants(gm)
    assert [n.op for n in gm.graph.nodes].count("get_attr") == 0
    assert len(constants) == 2 and constants[0] is weight and constants[1] is bias  # weight used twice, lifted once
    torch.testing.assert_close(gm(x, *constants), expected)


def test_a_run_with_compile_pass_compiles_its_second_pass_and_keeps_the_eager_result(monkeypatch, caplog):
    """As on a GPU (a graphed pass, Triton present) but on the CPU: the run's second pass is traced and compiled,
    then its capture fails (no CUDA), so the run goes on eagerly; its losses are those of a run without
    compile_pass."""
    traced = []

    def compile_spy(eager, z, sigma, *args, **kwargs):
        traced.append(z.shape)
        return compiled_pass.compiled_pass(eager, z, sigma, *args, **kwargs)

    monkeypatch.setattr(gradient_pass, "graph_blocker", lambda *args: None)
    monkeypatch.setattr(gradient_pass, "triton_available", lambda: True)
    monkeypatch.setattr(gradient_pass, "compiled_pass", compile_spy)
    records = {}
    for compile_pass in (False, True):
        with caplog.at_level(logging.INFO, logger="attend_and_excite"):
            _, records[compile_pass] = run_node(
                MODEL(), make_conditioning("sd1", 1), make_conditioning("sd1", 2), {"samples": torch.zeros(1, 4, 16, 16)},
                steps=4, token_indices="2,5", thresholds="", compile_pass=compile_pass)
    assert traced == [torch.Size([1, 4, 16, 16])]
    for a, b in zip(records[False].steps, records[True].steps):
        torch.testing.assert_close(a.loss, b.loss)
    assert any("could not be captured" in r.getMessage() for r in caplog.records)


def test_a_failed_compilation_is_logged_and_the_pass_runs_uncompiled(caplog):
    def eager(z, sigma):
        return compiled_pass.PassResult((z * sigma).sum().reshape(1), 2 * z, z, z)

    def failing(z, sigma, expected):
        raise RuntimeError("inductor broke\nmore detail")

    graphed = GraphedPass(eager, failing)
    z, sigma = torch.randn(1, 4, 2, 2), torch.tensor([0.5])
    with caplog.at_level(logging.WARNING, logger="attend_and_excite"):
        results = [graphed(z + i, sigma) for i in range(3)]
    assert all(torch.equal(r.grad, 2 * (z + i)) for i, r in enumerate(results))
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not be compiled (RuntimeError: inductor broke)" in m for m in messages)
    assert not graphed.compiled


def _norm_calls_and_captures(monkeypatch, compile_stand_in):
    """The events of a 6-step run (3 A&E passes) without and with compile_pass, as on a GPU but on the CPU:
    "per-norm" for each GroupNorm call through the per-norm compiled function (a spy standing in for it, CPU
    channels-last input standing in for CUDA's), "capture" for the CUDA graph's capture (a stand-in that records it
    and fails, as without CUDA), and what `compile_stand_in(events)`, standing in for compiled_pass, records."""
    events = []

    def capture():
        events.append("capture")
        raise RuntimeError("no CUDA graphs here")

    class PerNormCompiler:
        def check(self):
            return True

        def call(self, x, norm, forward):
            events.append("per-norm")
            return forward(x)

    monkeypatch.setattr(nhwc_norm, "_channels_last_cuda",
                        lambda x: x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    monkeypatch.setattr(nhwc_norm, "_compiler", PerNormCompiler())
    monkeypatch.setattr(gradient_pass, "graph_blocker", lambda *args: None)
    monkeypatch.setattr(gradient_pass, "triton_available", lambda: True)
    monkeypatch.setattr(gradient_pass, "compiled_pass", compile_stand_in(events))
    monkeypatch.setattr(graphed_pass.torch.cuda, "CUDAGraph", capture)
    orders = {}
    for compile_pass in (False, True):
        events.clear()
        run_node(MODEL(), make_conditioning("sd1", 1), make_conditioning("sd1", 2),
                 {"samples": torch.zeros(1, 4, 16, 16)}, steps=6, token_indices="2,5", thresholds="",
                 compile_pass=compile_pass)
        orders[compile_pass] = list(events)
    return orders


def test_after_a_failed_compilation_the_pass_compiles_each_group_norm_as_a_run_without_compile_pass_does(monkeypatch):
    """The eager pass a failed compilation leaves is the one of a run without compile_pass: its channels-last
    GroupNorms go through their own compiled function, compiled by the pass of that call, before the next call's
    capture, never inside it, and the run does no pass more than it counts. Before the compilation, the run's first
    pass keeps PyTorch's norm."""
    def failing(events):
        def compile(*args, **kwargs):
            events.append("compile")
            raise RuntimeError("inductor broke")
        return compile

    orders = _norm_calls_and_captures(monkeypatch, failing)
    norm_calls = {run: [e for e in events if e != "capture"] for run, events in orders.items()}
    assert norm_calls[False] and set(norm_calls[False]) == {"per-norm"}
    assert orders[True][0] == "compile"  # the first pass took no per-norm function
    assert set(norm_calls[True][1:]) == {"per-norm"}  # every later pass did
    captured_at = orders[True].index("capture")
    assert "per-norm" in orders[True][1:captured_at]  # compiled before the capture, not inside it
    per_pass = orders[False].index("capture")  # a run without compile_pass captures at its second pass
    # all passes but the first went through the per-norm function: no pass more than the run's
    assert len(norm_calls[True]) - 1 == len(norm_calls[False]) - per_pass


def test_after_a_failed_capture_of_the_compiled_pass_the_pass_compiles_each_group_norm(monkeypatch):
    """A compilation that succeeds but whose capture fails leaves the run eager: from then on its GroupNorms go
    through their own compiled function, as in a run without compile_pass (the first pass, before the
    compilation, keeps PyTorch's norm)."""
    def succeeding(events):
        def compile(eager, *args, **kwargs):
            events.append("compile")
            return eager  # stands in for the compiled program, which the failing capture never runs
        return compile

    orders = _norm_calls_and_captures(monkeypatch, succeeding)
    assert orders[True][:2] == ["compile", "capture"]  # the first pass took no per-norm function
    after = orders[True][2:]
    assert after and set(after) == {"per-norm"}
    # the passes after the capture are those of a run without compile_pass after its own failed capture
    assert after == orders[False][orders[False].index("capture") + 1:]


def test_the_node_input_reaches_the_settings_and_a_cpu_run_says_it_stays_uncompiled(caplog):
    assert settings_from(ae_defaults(compile_pass=True)).compile_pass
    assert not settings_from(ae_defaults()).compile_pass  # workflows saved before the input existed
    with caplog.at_level(logging.INFO, logger="attend_and_excite"):
        run_node(MODEL(), make_conditioning("sd1", 1), make_conditioning("sd1", 2),
                 {"samples": torch.zeros(1, 4, 16, 16)}, steps=2, token_indices="2,5", thresholds="", compile_pass=True)
    assert any("compile_pass compiles only a CUDA-graph pass" in r.getMessage() for r in caplog.records)


def test_a_traced_channels_last_group_norm_becomes_the_nhwc_operations(monkeypatch):
    monkeypatch.setattr(nhwc_norm, "_channels_last_cuda", lambda x: x.is_contiguous(memory_format=torch.channels_last))
    monkeypatch.setattr(nhwc_norm, "_compiled", lambda: pytest.fail("the per-norm compiled function was called"))
    norm = torch.nn.GroupNorm(4, 8)
    swap = nhwc_norm.NHWCGroupNorms(torch.nn.Sequential(norm), compile_each=False)
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with swap.swapped():
        gm = make_fx(norm, tracing_mode="real")(x)
        eager = norm(x)  # outside a trace, without compile_each: PyTorch's norm
    ops = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert "aten.var_mean.correction" in ops and not any("group_norm" in op for op in ops)
    torch.testing.assert_close(gm(x), eager, rtol=1e-5, atol=1e-5)


def test_the_benchmark_counter_leaves_out_the_trace_of_a_pass():
    """bench/counters.py: tracing the pass to compile it runs its Python once; that is no pass of the run."""
    from bench.counters import PassCounter
    first, last = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    counter = PassCounter(first, last)

    def pass_(x):
        x = x.requires_grad_(True)
        return torch.autograd.grad(last(first(x)).sum(), x)[0]

    make_fx(pass_, tracing_mode="real")(torch.randn(2, 3))
    assert counter.snapshot()["forwards"] == counter.snapshot()["backward"] == 0
    pass_(torch.randn(2, 3))
    counts = counter.snapshot()
    assert (counts["forwards"], counts["full"], counts["grad"], counts["backward"]) == (1, 1, 1, 1)

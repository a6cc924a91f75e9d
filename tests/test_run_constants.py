"""The split of a traced pass into the work on its run's constants alone and the rest
(nodes/engine/run_constants.py), on small traced functions: the split computes what the whole graph computed; the
work that reads only constants moves out (and a constant read by nothing else is no longer an input), while views
of constants, work on no input at all and random operations stay; the size bound takes the smallest results
first; a graph that writes into a constant is not split (make_fx's own tracking already routes later reads through
the write; a write into a value made from constants would still change a value the prelude made once)."""
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from aande_pack.nodes.engine.run_constants import split_constant_work

GEN = torch.Generator().manual_seed(0)
X, W, CONTEXT, PROJECTION = (torch.randn(shape, generator=GEN) for shape in ((4, 6), (5, 6), (7, 3), (3, 6)))


def keys_and_values(x, w, context, projection):
    """An attention-like function: the context's projection reads constants only, x @ w^T reads a view of one."""
    keys = context @ projection                     # (7, 6): constants only
    scale = torch.arange(1, 7, dtype=x.dtype).exp()  # no input at all
    return torch.softmax((x * scale) @ keys.t(), dim=-1) @ keys + (x @ w.t()).sum()


def ops(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def test_the_work_on_constants_alone_runs_once_apart_and_the_split_computes_the_same():
    gm = make_fx(keys_and_values, tracing_mode="real")(X, W, CONTEXT, PROJECTION)
    split = split_constant_work(gm, varying=1)
    constants = [W, CONTEXT, PROJECTION]
    assert ops(split.prelude).count("aten.mm.default") == 1       # context @ projection
    assert "aten.exp.default" in ops(split.main)                    # no input: left to the compiler
    assert "aten.t.default" in ops(split.main)                      # w^T, a view of a constant, stays
    assert split.kept == [0]                                        # only w is still read by the pass itself
    for x in (X, X * 3 - 1):
        torch.testing.assert_close(split.main(x, *split.inputs(constants)),
                                   keys_and_values(x, *constants))
    other = [W, CONTEXT + 1, PROJECTION]                            # another run's constants: recomputed
    torch.testing.assert_close(split.main(X, *split.inputs(other)), keys_and_values(X, *other))


def test_the_size_bound_keeps_the_larger_results_in_the_pass():
    def two_products(x, small, large):
        return x @ (small * 2) + (x @ (large + 1)).sum()

    small, large = torch.randn(6, 2), torch.randn(6, 50)
    for budget, hoisted in ((0, 0), (small.nbytes, 1), (small.nbytes + large.nbytes, 2)):
        gm = make_fx(two_products, tracing_mode="real")(X, small, large)
        split = split_constant_work(gm, varying=1, budget=budget)
        assert len(split.inputs([small, large])) - len(split.kept) == hoisted
        torch.testing.assert_close(split.main(X, *split.inputs([small, large])), two_products(X, small, large))


def test_random_work_on_constants_stays_in_the_pass():
    def noisy(x, w):
        return x + (torch.rand_like(w) * w).sum()

    gm = make_fx(noisy, tracing_mode="real")(X, W)
    split = split_constant_work(gm, varying=1)
    assert split.prelude is None and "aten.rand_like.default" in ops(split.main)


def test_a_graph_that_writes_into_a_constant_is_not_split():
    def writes(x, w):
        made = w * 2         # made from a constant alone, then written into: made once per run, the pass's
        made.add_(x.sum())   # write would pile up from call to call
        return made.sum() * x

    gm = make_fx(writes, tracing_mode="real")(X, W)
    split = split_constant_work(gm, varying=1)
    assert split.prelude is None
    inputs = split.inputs([W])
    for _ in range(2):
        torch.testing.assert_close(split.main(X, *inputs), writes(X, W))


@pytest.mark.parametrize("budget", [None, 0])
def test_a_graph_without_work_on_constants_alone_keeps_every_read_constant(budget):
    gm = make_fx(lambda x, w: x @ w.t(), tracing_mode="real")(X, W)
    split = split_constant_work(gm, varying=1, budget=budget)
    assert split.prelude is None and split.kept == [0]
    torch.testing.assert_close(split.main(X, *split.inputs([W])), X @ W.t())

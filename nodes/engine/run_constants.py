"""The part of a traced gradient pass that reads only its run's constants, computed once per run.

A traced pass (compiled_pass.py) reads the latent and sigma, and the run's constants: weights, the text
conditioning, the objective's indices. Part of its work reads the constants alone: each cross-attention layer's
keys and values are projections of the text conditioning (two matrix products per layer, 127 in SDXL's pass),
and the capture casts the captured layers' keys and values to float32. A CUDA graph replaying the pass redoes
that work for the same values at every pass (0.7 ms of SDXL's 39 ms compiled pass; docs/benchmarks.md, step 17).
Split off here, it runs once when a run binds its constants (`Split.inputs`), and the pass reads its results as
inputs.

What stays in the pass: views of constants (a transposed weight: free, and as an input it would only add one),
work that reads no input at all (Inductor folds it itself), random operations, and any result beyond HOISTED_BYTES
in all, the smallest taken first: results live as long as the run, and a model whose weights are cast at every
forward (fp8 storage) would otherwise hold a cast copy of its weights. A graph that writes into a constant in
place is not split at all: work moved before the write would read the value before it. A&E's pass has neither
random operations nor writes into constants today; the rules keep a split from changing what a pass computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx

from .aten_writes import written_arguments

HOISTED_BYTES = 256 * 2 ** 20  # per run; the cross-attention keys and values of SDXL at batch 1 take about 25 MiB


@dataclass
class Split:
    """A traced pass split into the work on constants alone and the rest."""
    prelude: torch.fx.GraphModule | None  # (*constants) -> its results, in the order `main` reads them
    main: torch.fx.GraphModule            # (*varying, *[constants[i] for i in kept], *prelude's results)
    kept: list[int]                       # the constants `main` reads itself

    def inputs(self, constants: list[torch.Tensor]) -> list[torch.Tensor]:
        """`main`'s inputs after the varying ones, for one run's constants (runs the prelude)."""
        hoisted = self.prelude(*constants) if self.prelude is not None else ()
        return [constants[i] for i in self.kept] + list(hoisted)


def split_constant_work(gm: torch.fx.GraphModule, varying: int, budget: int | None = None) -> Split:
    """Splits gm, whose first `varying` inputs change from call to call and whose other inputs are the run's
    constants, in place (gm becomes `main`)."""
    budget = HOISTED_BYTES if budget is None else budget
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    constants = placeholders[varying:]
    computed = _constant_work(graph, set(placeholders[:varying]), set(constants))
    frontier = [n for n in graph.nodes if n in computed and any(u not in computed for u in n.users)
                and isinstance(n.meta.get("val"), torch.Tensor)]
    hoisted, total = [], 0
    for node in sorted(frontier, key=_bytes):
        total += _bytes(node)
        if total > budget:
            break
        hoisted.append(node)
    hoisted.sort(key=list(graph.nodes).index)
    prelude = _prelude(graph, constants, hoisted) if hoisted else None

    last = placeholders[-1]
    for node in hoisted:
        with graph.inserting_after(last):
            last = graph.placeholder(f"hoisted_{node.name}")
        last.meta = dict(node.meta)
        node.replace_all_uses_with(last)
    graph.eliminate_dead_code()
    kept = [i for i, node in enumerate(constants) if node.users]
    for node in constants:
        if not node.users:
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return Split(prelude, gm, kept)


def _constant_work(graph: torch.fx.Graph, varying: set, constants: set) -> set:
    """The nodes that compute something from the constants alone (not only views of them); none if the graph
    writes into anything but varying values."""
    reads_constants, computed = set(constants), set()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        inputs = node.all_input_nodes
        written = [v for v in written_arguments(node.target, node.args, node.kwargs) if isinstance(v, torch.fx.Node)]
        if any(w not in varying for w in written):
            return set()
        if written or any(i in varying for i in inputs) or _random(node):
            varying.add(node)
        elif any(i in reads_constants for i in inputs):
            reads_constants.add(node)
            if not _is_view(node) or any(i in computed for i in inputs):
                computed.add(node)
    return computed


def _random(node: torch.fx.Node) -> bool:
    return torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ())


def _is_view(node: torch.fx.Node) -> bool:
    return getattr(node.target, "is_view", False)


def _bytes(node: torch.fx.Node) -> int:
    """What keeping node's value costs: its whole storage, since a view keeps its base alive."""
    return node.meta["val"].untyped_storage().nbytes()


def _prelude(graph: torch.fx.Graph, constants: list, outputs: list) -> torch.fx.GraphModule:
    """A module computing `outputs` from the constants (every one of them an input, so it takes the same list)."""
    prelude = torch.fx.Graph()
    env = {node: prelude.placeholder(node.name) for node in constants}
    wanted = set(outputs)
    for node in reversed(graph.nodes):  # the ancestors of the outputs
        if node in wanted:
            wanted.update(node.all_input_nodes)
    for node in graph.nodes:
        if node in wanted and node not in env:
            env[node] = prelude.node_copy(node, env.__getitem__)
    prelude.output(tuple(env[node] for node in outputs))
    prelude.lint()
    return torch.fx.GraphModule(torch.nn.Module(), prelude)

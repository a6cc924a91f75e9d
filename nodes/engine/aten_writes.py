"""Which arguments an ATen operator writes to, read from its schema: what the pass's copies of saved tensors
(saved_copies.py) and the split of a traced pass (run_constants.py) must both know."""
from __future__ import annotations


def written_arguments(op, args, kwargs):
    """The values `op` writes to, in a call with `args` and `kwargs` (tensors at run time, graph nodes in a traced
    graph): its in-place (`Tensor(a!)`) and out= arguments, lists of them flattened; none for an operator that
    writes nothing or has no schema (a Python function in a graph)."""
    schema = getattr(op, "_schema", None)
    if schema is None or not schema.is_mutable:
        return
    for i, arg in enumerate(schema.arguments):
        if arg.alias_info is None or not arg.alias_info.is_write:
            continue
        value = kwargs.get(arg.name) if arg.kwarg_only or i >= len(args) else args[i]
        yield from value if isinstance(value, (list, tuple)) else (value,)

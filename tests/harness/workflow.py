"""UI-format workflows (what the frontend saves, e.g. example_workflows/*.json) to API prompts, without a browser.

The frontend stores a node's widget values as a list in widget order: the node's widget inputs in
/object_info's input_order (required, then optional), each INT or COMBO with `control_after_generate` followed by
its control value ("fixed", "randomize", ...). A widget input fed by a link takes the link instead; a widget the
node gained after the workflow was saved gets its default, as in the frontend. This is
what the frontend's graphToPrompt does for plain graphs; tests/test_examples.py checks the two agree on every
example. Frontend-only nodes other than notes (reroutes, legacy primitives, groups of nodes) are refused.
"""
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_TYPES = {"Note", "MarkdownNote"}
ACTIVE, MUTED = 0, 2  # LiteGraph node modes; 4 (bypass) would need rewiring


def _is_widget(spec) -> bool:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput")


def _has_control(spec) -> bool:
    return bool(len(spec) > 1 and (spec[1] or {}).get("control_after_generate"))


def to_api_prompt(workflow: dict, object_info: dict) -> dict:
    """{node id: {"class_type", "inputs", "_meta"}} for the active nodes of a UI-format `workflow`."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        kind, mode = node["type"], node.get("mode", ACTIVE)
        if kind in NOTE_TYPES or mode == MUTED:
            continue
        if mode != ACTIVE:
            raise ValueError(f"node {node['id']} ({kind}) is bypassed (mode {mode}); un-bypass it or remove it")
        if kind not in object_info:
            raise ValueError(f"node {node['id']} has type {kind!r}, which this server does not know: install "
                             f"the custom node that provides it (reroutes and legacy primitives are not handled)")
        info = object_info[kind]
        linked = {slot["name"]: slot["link"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for section in ("required", "optional"):
            for name in info.get("input_order", {}).get(section, []):
                spec = info["input"][section][name]
                if _is_widget(spec):
                    if not values:
                        # a widget added after the workflow was saved: the frontend gives it its default
                        if "default" not in ((spec[1] if len(spec) > 1 else {}) or {}):
                            raise ValueError(f"node {node['id']} ({kind}) has fewer widget values than inputs: "
                                             f"re-save the workflow in the frontend")
                        inputs[name] = spec[1]["default"]
                        continue
                    inputs[name] = values.pop(0)
                    if _has_control(spec):
                        values.pop(0)
                if name in linked:
                    origin = links[linked[name]]
                    inputs[name] = [str(origin[1]), origin[2]]
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs,
                                   "_meta": {"title": node.get("title") or info.get("display_name") or kind}}
    return prompt


def nodes_of(prompt: dict, class_type: str) -> list[dict]:
    """The API prompt's nodes of one class, in id order."""
    return [node for _, node in sorted(prompt.items(), key=lambda kv: int(kv[0])) if node["class_type"] == class_type]

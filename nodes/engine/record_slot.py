"""Where sampler runs publish their attention records when the node that makes the AE_ATTENTION output is not
the node that samples ("A&E Sampler" in SamplerCustom, "Apply Attend-and-Excite" in a stock KSampler).

Each run publishes its own record, keyed by the prompt and the sampler node that ran it, so two samplers fed by
one output never overwrite each other: the preview of such an output then says which nodes ran and how to tell
them apart. A record of a newer prompt replaces those of older prompts.
"""
from __future__ import annotations

from ...aande_core.record import AttentionRecord
from .. import compat


class RecordSlot:
    def __init__(self):
        self._records: dict[tuple[str | None, str | None], AttentionRecord] = {}

    def publish(self, record: AttentionRecord) -> None:
        """Keep `record` as the record of the sampler node now executing."""
        key = compat.executing_node()
        self._records = {k: r for k, r in self._records.items() if k[0] == key[0]}
        self._records[key] = record

    def record(self) -> AttentionRecord:
        """The one record published for the latest prompt; a clear error when there is none or several."""
        if not self._records:
            raise ValueError(
                "the attention record is empty: nothing has been sampled with it yet. Connect the image decoded "
                "from the sampler's latent to this node's 'image' input as well, so the preview runs after sampling")
        if len(self._records) > 1:
            nodes = ", ".join(sorted(str(node) for _, node in self._records))
            raise ValueError(f"sampler nodes {nodes} all ran with this attention output in one prompt, so it holds "
                             f"{len(self._records)} records; give each sampler its own 'A&E Sampler' or 'Apply "
                             "Attend-and-Excite' node to preview each run")
        return next(iter(self._records.values()))


def resolve(attention) -> AttentionRecord:
    """An AE_ATTENTION value as a record: a record itself (A&E KSampler) or a slot filled by a sampler run."""
    return attention.record() if isinstance(attention, RecordSlot) else attention

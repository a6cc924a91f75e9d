"""Node "A&E Sampler": wraps any sampler for SamplerCustom / SamplerCustomAdvanced."""
from __future__ import annotations

from ..engine.record_slot import RecordSlot
from ..engine.sampler import AESampler
from .inputs import ae_inputs, optional_inputs, settings_from


class AESamplerNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "sampler": ("SAMPLER", {"tooltip": "The base sampler, e.g. from KSamplerSelect."}),
                **ae_inputs(),
            },
            "optional": optional_inputs(),
        }

    RETURN_TYPES = ("SAMPLER", "AE_ATTENTION")
    RETURN_NAMES = ("SAMPLER", "attention")
    OUTPUT_TOOLTIPS = ("The base sampler with Attend-and-Excite applied to the guider's positive conditioning.",
                       "Filled when the sampler runs: connect the decoded IMAGE to 'Attention Map Preview' too, "
                       "so that the preview runs after sampling.")
    FUNCTION = "wrap"
    CATEGORY = "sampling/attend_and_excite"
    DESCRIPTION = "Attend-and-Excite for SamplerCustom and SamplerCustomAdvanced, with any guider, sigmas and noise."

    def wrap(self, sampler, subject_tokens=None, **ae):
        slot = RecordSlot()
        return (AESampler(sampler, settings_from(ae), slot.publish, legacy_selection=subject_tokens), slot)


NODE_CLASS_MAPPINGS = {"AESampler": AESamplerNode}
NODE_DISPLAY_NAME_MAPPINGS = {"AESampler": "A&E Sampler"}

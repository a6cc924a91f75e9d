"""Node "Apply Attend-and-Excite": MODEL -> MODEL, so that any sampler node (KSampler, KSampler (Advanced),
SamplerCustom(Advanced), other packs' samplers) samples with A&E."""
from __future__ import annotations

from ..engine.patch import attend_and_excite_model
from ..engine.record_slot import RecordSlot
from .inputs import ae_inputs, optional_inputs, settings_from


class AEApplyAttendAndExcite:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD1.x, SD2.x or SDXL model (a UNet with text cross-attention)."}),
                **ae_inputs(),
            },
            "optional": optional_inputs(legacy_tokens=False),
        }

    RETURN_TYPES = ("MODEL", "AE_ATTENTION")
    RETURN_NAMES = ("MODEL", "attention")
    OUTPUT_TOOLTIPS = ("The model, patched so that every sampler node using it runs Attend-and-Excite on the "
                       "subjects its positive conditioning carries (from 'Select Subject Tokens').",
                       "Filled when a sampler runs with the patched model: connect the decoded IMAGE to 'Attention "
                       "Map Preview' too, so that the preview runs after sampling.")
    FUNCTION = "apply"
    CATEGORY = "sampling/attend_and_excite"
    DESCRIPTION = ("Attend-and-Excite as a model patch: put it in front of KSampler, KSampler (Advanced) or any "
                   "sampler node. A&E's step numbers count the steps that sampler runs.")

    def apply(self, model, **ae):
        slot = RecordSlot()
        return (attend_and_excite_model(model, settings_from(ae), slot), slot)


NODE_CLASS_MAPPINGS = {"AEApplyAttendAndExcite": AEApplyAttendAndExcite}
NODE_DISPLAY_NAME_MAPPINGS = {"AEApplyAttendAndExcite": "Apply Attend-and-Excite"}

"""Graph input/output names, in the layout other ONNX decoder exports use."""

from __future__ import annotations

from dataclasses import dataclass

PAST_KEY = "past_key_values.%d.key"
PAST_VALUE = "past_key_values.%d.value"
PRESENT_KEY = "present.%d.key"
PRESENT_VALUE = "present.%d.value"


@dataclass(frozen=True)
class GraphNames:
    num_layers: int

    def past(self, layer: int) -> tuple[str, str]:
        return PAST_KEY % layer, PAST_VALUE % layer

    def present(self, layer: int) -> tuple[str, str]:
        return PRESENT_KEY % layer, PRESENT_VALUE % layer

    def kv_config(self) -> dict[str, str]:
        return {"past_key": PAST_KEY, "past_value": PAST_VALUE,
                "present_key": PRESENT_KEY, "present_value": PRESENT_VALUE}

"""FP32: the export itself; no precision step, no guard, an engine of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dacovid_export.calibration.precisions.base import (
    PrecisionKind,
    Tolerance,
    register_precision,
)
from dacovid_export.core.errors import UserInputError
from dacovid_export.export.config import FP32_TOLERANCE

if TYPE_CHECKING:
    from dacovid_export.calibration.config import PrecisionConfig

__all__ = ["Fp32"]


@register_precision
class Fp32(PrecisionKind):
    name = "fp32"
    order = 0
    summary = "fp32: the export itself"
    # ORT vs PyTorch differ by reordered float sums only (8e-5 on logits of ~30 measured): export's own self-check
    atol, rtol = FP32_TOLERANCE
    # every top-1 class equal; max |logit diff| <= 1e-3 x the logit scale
    parity = Tolerance(min_agreement=1.0, max_logit_rel=1e-3, max_prob_diff=1e-3)
    made_by_step = False
    engine_help = "FP32 engine from an FP32 ONNX."

    def check_options(self, config: "PrecisionConfig") -> None:
        given = [n for n in ("calib_data", "calib_size", "calib_method") if getattr(config, n) is not None]
        if given:
            raise UserInputError(
                f"{', '.join(given)} given with precision 'fp32': calibration is used by fp16/int8 only; "
                "drop the option or pick --precision fp16/int8"
            )

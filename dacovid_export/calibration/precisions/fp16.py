"""FP16: Model Optimizer AutoCast with the attention kept FP32, under the FP16 guard when there are images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dacovid_export.calibration.fp16_guard import (
    DEFAULT_FP16_MIN_AGREEMENT,
    Fp16GuardReport,
)
from dacovid_export.calibration.precisions.base import (
    PrecisionKind,
    StepInputs,
    Tolerance,
    register_precision,
)
from dacovid_export.core.errors import UserInputError

if TYPE_CHECKING:
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.fp16_guard import Fp16GuardConfig
    from dacovid_export.calibration.result import PrecisionResult

__all__ = ["Fp16"]


@register_precision
class Fp16(PrecisionKind):
    name = "fp16"
    order = 1
    summary = "fp16: mixed precision, attention kept FP32"
    # against the FP32 ONNX model; loose enough for honest rounding, tight enough to catch an attention overflow
    # (which changed logits by ~70% of their scale, docs/design.md section 4)
    atol, rtol = 1e-3, 5e-2
    # top-1 >= 99.5%; max |logit diff| <= 2% of the scale, because a plain FP16 cast of the attention keeps the
    # winning class but shrinks the logits ~3x (docs/design.md section 4) and only the logits show it
    parity = Tolerance(min_agreement=DEFAULT_FP16_MIN_AGREEMENT, max_logit_rel=0.02, max_prob_diff=0.05)
    attention_fp32 = True
    guard = "FP16"
    guard_report = Fp16GuardReport
    pipeline_step = "ONNX FP16 conversion"
    engine_help = "FP16 engine (an FP32 ONNX first goes through AutoCast; attention stays FP32)."

    def check_options(self, config: "PrecisionConfig") -> None:
        if config.calib_method is not None:
            raise UserInputError(
                "calib_method is an INT8 option; FP16 uses calibration images only for its range check (--calib-data)"
            )
        self.guard_config(config)
        if config.min_agreement is not None and config.calib_data is None and config.validation_data is None:
            raise UserInputError(
                f"min_agreement={config.min_agreement!r} given for fp16 without images: the FP16 guard measures "
                "agreement on validation images; pass --calib-data DIR (a part is held out) or --validation-data DIR"
            )

    def guard_config(self, config: "PrecisionConfig") -> "Fp16GuardConfig":
        """By default ``check``'s FP16 threshold (99.5%), so a guarded model passes ``check``."""
        from dacovid_export.calibration.fp16_guard import Fp16GuardConfig

        return Fp16GuardConfig(min_agreement=DEFAULT_FP16_MIN_AGREEMENT if config.min_agreement is None else config.min_agreement)

    def unguarded_note(self) -> tuple[str, ...]:
        return ("FP16 guard: not run (no images: pass --calib-data or --validation-data to measure agreement with FP32)",)

    def make(self, x: StepInputs) -> "PrecisionResult":
        from dacovid_export.calibration.fp16 import convert_fp16
        from dacovid_export.calibration.fp16_guard import guarded_convert_fp16

        if x.validation is None:
            return convert_fp16(x.fp32_path, x.raw, calibration=None)
        return guarded_convert_fp16(
            x.fp32_path, x.raw, validation=x.validation, calibration=x.calibration, config=self.guard_config(x.config),
            progress=x.progress, labels=x.labels,
        )

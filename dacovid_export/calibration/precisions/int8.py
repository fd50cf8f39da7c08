"""INT8: explicit Q/DQ (Model Optimizer) under the INT8 guard; calibration images required; QAT optional."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dacovid_export.calibration.guard import GuardReport
from dacovid_export.calibration.precisions.base import (
    PrecisionKind,
    StepInputs,
    Tolerance,
    register_precision,
)
from dacovid_export.core.errors import UserInputError

if TYPE_CHECKING:
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.guard import GuardConfig
    from dacovid_export.calibration.result import PrecisionResult

__all__ = ["Int8"]


@register_precision
class Int8(PrecisionKind):
    name = "int8"
    order = 2
    summary = "int8: Q/DQ from calibration images"
    atol, rtol = 1e-2, 2.5e-1
    # one gate: the guard's agreement at the user's --min-agreement; the logit tolerance is reported (a NaN or
    # infinite logit still refuses, and a broken graph fails the structural checks)
    logits_gate = False
    # top-1 >= 98% and accuracy at most 1 point below FP32 on labelled inputs; logits and probabilities are not
    # bounded (quantisation moves them by design; agreement and accuracy judge it)
    parity = Tolerance(min_agreement=0.98, max_accuracy_drop=0.01)
    attention_fp32 = True
    requires_qdq = True
    guard = "INT8"
    guard_report = GuardReport
    needs_images = True
    pipeline_step = "ONNX INT8 conversion"
    no_images_skip = (
        "no calibration images: give --calib-data DIR (training images, not the parity set) to make the INT8 model"
    )
    engine_help = "INT8 engine (an FP32 ONNX is first quantized to Q/DQ; needs --calib-data)."
    calibration_method = True
    quantization_aware = True

    def check_options(self, config: "PrecisionConfig") -> None:
        from dacovid_export.calibration.cache import cache_max_bytes

        if config.calib_data is None:
            raise UserInputError(
                "precision 'int8' needs calibration images: pass --calib-data DIR (class folders or a flat folder of "
                "images like those the model will see)"
            )
        cache_max_bytes()  # a bad DACOVID_CACHE_MAX_GB is found now, not after the FP32 export
        self.guard_config(config)  # GuardConfig is the one home of the guard's option rules (min_agreement in 0..1)

    def guard_config(self, config: "PrecisionConfig") -> "GuardConfig":
        """Every calibration method unless one was chosen; after QAT max first (the fake quantization used max ranges)."""
        from dacovid_export.calibration.guard import DEFAULT_MIN_AGREEMENT, GuardConfig
        from dacovid_export.calibration.int8 import CALIBRATION_METHODS

        if config.calib_method is not None:
            methods: tuple[str, ...] = (config.calib_method,)
        elif config.qat:
            methods = ("max", *(m for m in CALIBRATION_METHODS if m != "max"))
        else:
            methods = CALIBRATION_METHODS
        return GuardConfig(
            min_agreement=DEFAULT_MIN_AGREEMENT if config.min_agreement is None else config.min_agreement, methods=methods
        )

    def make(self, x: StepInputs) -> "PrecisionResult":
        from dacovid_export.calibration.guard import guarded_quantize_int8

        if x.calibration is None or x.validation is None:
            raise UserInputError("precision 'int8' needs calibration images: pass --calib-data DIR")
        return guarded_quantize_int8(
            x.fp32_path, x.raw, calibration=x.calibration, validation=x.validation, config=self.guard_config(x.config),
            cache_dir=x.config.cache_dir, progress=x.progress, reference_model=x.reference, qat=x.qat,
            qat_hint=x.qat_hint, labels=x.labels,
        )

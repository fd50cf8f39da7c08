"""BF16: the FP32 graph, unchanged, marked for BF16 execution by OpenVINO once the BF16 guard passed."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from dacovid_export.calibration.bf16 import Bf16GuardReport
from dacovid_export.calibration.precisions.base import (
    PrecisionKind,
    StepInputs,
    Tolerance,
    register_precision,
)
from dacovid_export.core.errors import UserInputError

if TYPE_CHECKING:
    from dacovid_export.calibration.bf16 import Bf16GuardConfig
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.result import PrecisionResult

__all__ = ["Bf16"]


@register_precision
class Bf16(PrecisionKind):
    name = "bf16"
    order = 3
    summary = (
        "bf16: the FP32 graph marked for BF16 on the CPU (OpenVINO, CPUs with avx512_bf16/AMX), written only if its "
        "guard passes (needs --validation-data or --calib-data)"
    )
    # OpenVINO (an FP32 graph run with 8-bit mantissas) against ONNX Runtime FP32: as loose as INT8 since the
    # rounding reaches the attention's energies; like INT8 the guard's agreement decides, the logits are reported
    atol, rtol = 1e-2, 2.5e-1
    logits_gate = False
    checked_with = "openvino"
    # INT8's criteria: its logits move by rounding of the attention's large energies (up to ~0.3 on a 224 model),
    # so agreement and accuracy judge it; its guard at export demanded >= 99% on held-out images
    parity = Tolerance(min_agreement=0.98, max_accuracy_drop=0.01)
    guard = "BF16"
    guard_report = Bf16GuardReport
    needs_images = True
    # an extra on CPUs with BF16: the pipeline makes it unasked, so a refusal there is a skip
    pipeline_step = "ONNX BF16 (guarded)"
    pipeline_extra = True
    no_images_skip = "no images for the BF16 guard: give --calib-data DIR (a part is held out to judge BF16)"
    producer_tool = "OpenVINO BF16 guard, graph unchanged"
    # no engine: a BF16-marked ONNX model is made for OpenVINO on a CPU
    no_engine_reason = "is marked for BF16 execution on a CPU (OpenVINO)"
    no_engine_note = "bf16 models run on the CPU through OpenVINO, not as engines"

    def model_line(self, fp32_nodes: tuple[str, ...]) -> str:
        return "BF16 model: the FP32 graph, run by OpenVINO at bf16 (every node: OpenVINO keeps none in FP32)"

    def preflight(self) -> None:
        from dacovid_export.calibration.bf16 import require_bf16_cpu

        require_bf16_cpu()  # on a CPU without BF16 the guard could measure nothing

    def check_options(self, config: "PrecisionConfig") -> None:
        if config.calib_method is not None or config.cache_dir is not None:
            raise UserInputError(
                "calib_method/cache_dir are INT8 options; BF16 runs the FP32 graph and uses images only for its guard"
            )
        self.guard_config(config)
        if config.calib_data is None and config.validation_data is None:
            # BF16 is never chosen silently nor made unjudged: no images, no guard, no BF16 model
            raise UserInputError(
                "precision 'bf16' is made only through its accuracy guard, which needs images: pass "
                "--validation-data DIR (or a dacovid-train split.json: its held-out part), or --calib-data DIR "
                "(a part is held out)"
            )

    def guard_config(self, config: "PrecisionConfig") -> "Bf16GuardConfig":
        """By default the INT8 guard's threshold (99%)."""
        from dacovid_export.calibration.bf16 import Bf16GuardConfig
        from dacovid_export.calibration.guard import DEFAULT_MIN_AGREEMENT

        return Bf16GuardConfig(min_agreement=DEFAULT_MIN_AGREEMENT if config.min_agreement is None else config.min_agreement)

    def make(self, x: StepInputs) -> "PrecisionResult":
        """The graph stays the FP32 one (OpenVINO rounds at run time); the guard decides whether it may be marked.

        No node is kept FP32: OpenVINO's CPU plugin runs every node in BF16 once the hint is bf16
        (calibration/bf16.py), so the guard judges exactly what will run. Raises
        :class:`CheckFailedError` (nothing written) below ``--min-agreement``.
        """
        from dacovid_export.calibration.bf16 import guard_bf16
        from dacovid_export.calibration.result import PrecisionResult

        if x.validation is None:
            raise UserInputError("precision 'bf16' is made only through its accuracy guard, which needs images")
        report = guard_bf16(
            x.fp32_path, x.validation, self.guard_config(x.config), exclude=x.calibration, name=(x.output or x.raw).name
        )
        shutil.copyfile(x.fp32_path, x.raw)
        return PrecisionResult(precision="bf16", fp32_nodes=(), seconds=report.seconds, cache_hit=False, guard=report)

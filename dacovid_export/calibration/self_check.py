"""The precision step's numeric self-check: the written model against the FP32 one, batch by batch.

On the calibration images where there are enough (each batch its own), on seeded synthetic
inputs otherwise; run with the runtime the precision names (``checked_with``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.calibration.bf16 import openvino_bf16_runner
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.data import CalibrationSet
from dacovid_export.calibration.precisions import precision_of
from dacovid_export.core.errors import CheckFailedError
from dacovid_export.core.onnxruntime_session import open_session, run_session
from dacovid_export.data.agreement import NumericComparison, compare_numeric
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.export.onnx_export import sample_batch

__all__ = ["checked_runtime", "verify_against_fp32"]


def checked_runtime(precision: str) -> str:
    """The runtime the self-check runs the written model with: OpenVINO for BF16, ONNX Runtime otherwise."""
    return precision_of(precision).checked_with


def verify_against_fp32(
    fp32_path: Path, candidate: Path, preprocessing: Preprocessing, config: PrecisionConfig, batches: tuple[int, ...],
    calibration: CalibrationSet | None,
) -> tuple[NumericComparison, ...]:
    atol, rtol = config.tolerance
    reference_session = open_session(fp32_path, purpose="check the exported model", error=CheckFailedError)
    if config.kind.checked_with == "openvino":
        # the written file is the FP32 graph (BF16): what it claims is how OpenVINO runs it, so that is compared
        run_bf16 = openvino_bf16_runner(candidate)
        return _compare_batches(reference_session, run_bf16, preprocessing, config, batches, calibration, atol, rtol)
    candidate_session = open_session(candidate, purpose="check the exported model", error=CheckFailedError)
    return _compare_batches(
        reference_session, lambda images: run_session(candidate_session, images), preprocessing, config, batches,
        calibration, atol, rtol,
    )


def _compare_batches(
    reference_session: Any,
    run_candidate: Callable[[np.ndarray], np.ndarray],
    preprocessing: Preprocessing,
    config: PrecisionConfig,
    batches: tuple[int, ...],
    calibration: CalibrationSet | None,
    atol: float,
    rtol: float,
) -> tuple[NumericComparison, ...]:
    out = []
    start = 0
    for i, n in enumerate(batches):
        if calibration is not None and len(calibration.array) >= start + n:
            # real images where we have them (each batch its own), judged on the data the step was calibrated for
            images = np.ascontiguousarray(calibration.array[start : start + n], dtype=np.float32)
            start += n
        else:
            images = sample_batch(preprocessing, n, seed=config.seed + i)
        reference = run_session(reference_session, images)
        out.append(compare_numeric(reference, run_candidate(images), atol=atol, rtol=rtol))
    return tuple(out)

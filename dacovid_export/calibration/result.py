"""What a precision step (FP16 AutoCast, INT8 quantization, the BF16 mark) reports about its output."""

from __future__ import annotations

import dataclasses
from typing import Any

from dacovid_export.calibration.guard_report import AccuracyReport

__all__ = ["PrecisionResult"]


@dataclasses.dataclass(frozen=True)
class PrecisionResult:
    """Outcome of :func:`convert_fp16`, :func:`quantize_int8` or a guarded step.

    ``fp32_nodes``: names of the compute nodes that still run in FP32 in the output
    model (for FP16: nodes whose outputs stayed float32; for INT8: compute nodes
    with no dequantized input). ``seconds``: wall time of the whole call.
    ``cache_hit``: the INT8 model came from the calibration cache (always False for FP16).
    ``details``: JSON-serialisable facts of the tool run for artifact metadata and reports.
    ``guard``: the accuracy guard's report, when one judged the model.
    """

    precision: str
    fp32_nodes: tuple[str, ...]
    seconds: float
    cache_hit: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    guard: AccuracyReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "fp32_nodes": list(self.fp32_nodes),
            "seconds": self.seconds,
            "cache_hit": self.cache_hit,
            "details": dict(self.details),
            "guard": None if self.guard is None else {self.guard.METADATA_KEY: self.guard.to_dict()},
        }

"""What a precision step (FP16 AutoCast or INT8 quantization) reports about its output."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["PrecisionResult"]


@dataclasses.dataclass(frozen=True)
class PrecisionResult:
    """Outcome of :func:`convert_fp16` or :func:`quantize_int8`.

    ``fp32_nodes``: names of the compute nodes that still run in FP32 in the output
    model (for FP16: nodes whose outputs stayed float32; for INT8: compute nodes
    with no dequantized input). ``seconds``: wall time of the whole call.
    ``cache_hit``: the INT8 model came from the calibration cache (always False for FP16).
    ``details``: JSON-serialisable facts for artifact metadata and reports.
    """

    precision: str
    fp32_nodes: tuple[str, ...]
    seconds: float
    cache_hit: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "fp32_nodes": list(self.fp32_nodes),
            "seconds": self.seconds,
            "cache_hit": self.cache_hit,
            "details": dict(self.details),
        }

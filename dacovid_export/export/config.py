"""Options of the FP32 export, validated on construction, and the self-check tolerances of every precision."""

from __future__ import annotations

import dataclasses
from typing import Any

from dacovid_export.core.validate import check_bool, check_int, check_number
from dacovid_export.core.limits import check_batch_size

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MAX_OPSET",
    "FP32_TOLERANCE",
    "OnnxExportConfig",
    "check_seed_and_tolerances",
    "verify_batches",
]

# Opset 20: read by the TensorRT 10.x/11.x parsers (9..24) and ONNX Runtime 1.24,
# and above the minimum of Model Optimizer 0.47's INT8 path (19), so the precision
# step never has to up-convert the graph (modelopt/onnx/quantization/quantize.py).
DEFAULT_OPSET = 20
MIN_OPSET = 19
MAX_OPSET = 24
_VERIFY_BATCHES = (1, 3)

# (atol, rtol) of the FP32 export's numeric self-check against PyTorch: allowed max |diff| = atol + rtol *
# max|reference logit|. ORT and PyTorch differ by reordered float sums only (8e-5 on logits of ~30 measured).
# The other precisions' tolerances are their own (calibration.precisions); FP32's lives here, with the export.
FP32_TOLERANCE: tuple[float, float] = (1e-4, 1e-3)


@dataclasses.dataclass(frozen=True)
class OnnxExportConfig:
    """Options of :func:`export_onnx`, validated on construction.

    ``max_batch``: with ``static_batch`` the fixed batch size (1 when unset);
    with a dynamic batch a hint stored as ``suggested_max_batch`` for engine
    profiles, and the cap of the self-check's batch sizes.
    ``atol``/``rtol``: the self-check against PyTorch; ``None`` means
    :data:`FP32_TOLERANCE`. FP16/INT8 options are the precision
    step's (:class:`dacovid_export.calibration.config.PrecisionConfig`).
    """

    opset: int = DEFAULT_OPSET
    max_batch: int | None = None
    static_batch: bool = False
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None

    def __post_init__(self) -> None:
        check_int(
            "opset", self.opset, MIN_OPSET, MAX_OPSET,
            why=f" (TensorRT's parser reads up to {MAX_OPSET}; Model Optimizer's INT8 step needs >= {MIN_OPSET}); the "
            f"default is {DEFAULT_OPSET}",
        )
        if self.max_batch is not None:
            check_batch_size(self.max_batch, "max_batch")
        check_bool("static_batch", self.static_batch)
        check_seed_and_tolerances(self.seed, self.atol, self.rtol)

    @property
    def tolerance(self) -> tuple[float, float]:
        """(atol, rtol) of the numeric self-check against PyTorch."""
        atol, rtol = FP32_TOLERANCE
        return (atol if self.atol is None else float(self.atol), rtol if self.rtol is None else float(self.rtol))

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the graph, or ``None`` for a dynamic batch."""
        return (self.max_batch or 1) if self.static_batch else None

    def verify_batches(self) -> tuple[int, ...]:
        return verify_batches(self.fixed_batch, self.max_batch)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_seed_and_tolerances(seed: Any, atol: Any, rtol: Any) -> None:
    """The rules every self-check shares: a seed >= 0, tolerances finite and >= 0 (``None``: the default)."""
    check_int("seed", seed, 0)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None:
            check_number(name, value, 0)


def verify_batches(fixed_batch: int | None, max_batch: int | None) -> tuple[int, ...]:
    """Batch sizes a self-check runs: the fixed batch, or 1 and 3 capped by a dynamic model's ``max_batch`` hint."""
    if fixed_batch is not None:
        return (fixed_batch,)
    cap = max_batch or max(_VERIFY_BATCHES)
    return tuple(sorted({min(b, cap) for b in _VERIFY_BATCHES}))

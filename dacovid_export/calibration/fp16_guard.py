"""Accuracy-guarded FP16: AutoCast, measured against FP32 on unseen images, costliest nodes kept FP32.

The same contract as the INT8 guard (:mod:`calibration.guard`), for AutoCast's mixed FP16 model:

1. Convert with AutoCast (:func:`calibration.fp16.convert_fp16`: attention chains FP32, range check)
   and measure top-1 agreement and |Δlogit| against the FP32 model in ONNX Runtime (CPU) on
   validation images the range check never saw.
2. Below ``min_agreement``: rank the nodes still in FP16 by the error each puts into the model
   (:mod:`calibration.layer_error`: the FP32 and the AutoCast model run once each on the validation
   images closest to flipping, every node's output compared with FP32's; ranked by the node's share
   of the error at its output, the statistic the INT8 guard ranks by). Magnitude alone, the earlier
   rule, says where FP16 could hurt, not where it does: a large tensor can carry its rounding
   harmlessly. Then convert again with the top 1, 2, 4, 8, ... of them kept FP32 (AutoCast's own
   ``nodes_to_exclude``), until the agreement holds.
3. Refuse (:class:`Fp16GuardFailedError`, nothing written) with the table of what was tried when the
   target is not reached before the share of convolutions left in FP16 would fall below
   ``min_fp16_conv_share``.

The default target is ``check``'s FP16 threshold (99.5%), so a guarded model passes ``check`` on
images like the validation ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dacovid_export.calibration.data import CalibrationSet, check_separate
from dacovid_export.calibration.fp16 import convert_fp16
from dacovid_export.calibration.graph import (
    NON_COMPUTE_OPS,
    check_calibration_array,
    check_output_path,
    ensure_node_names,
    load_source_model,
)
from dacovid_export.calibration.guard_report import (
    GuardVerdict,
    LabelAccuracy,
    candidate_table,
    label_accuracy,
)
from dacovid_export.calibration.layer_error import layer_errors, rank_by_error_share
from dacovid_export.calibration.result import PrecisionResult
from dacovid_export.calibration.sensitivity import at_risk_images, onnx_logits
from dacovid_export.core.deps import require
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import atomic_write_bytes
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.data.agreement import Agreement, measure_agreement

__all__ = [
    "DEFAULT_FP16_MIN_AGREEMENT",
    "DEFAULT_MIN_FP16_CONV_SHARE",
    "Fp16GuardConfig",
    "Fp16GuardStep",
    "Fp16GuardReport",
    "Fp16GuardFailedError",
    "guarded_convert_fp16",
]

_logger = get_logger("calibration")

DEFAULT_FP16_MIN_AGREEMENT = 0.995  # also check's FP16 threshold (calibration.precisions.fp16), so a guarded model passes check
DEFAULT_MIN_FP16_CONV_SHARE = 0.8


@dataclasses.dataclass(frozen=True)
class Fp16GuardConfig:
    """Options of the FP16 accuracy guard, validated on construction.

    ``min_agreement``: top-1 agreement with FP32 the FP16 model must reach on the validation images.
    ``min_fp16_conv_share``: refuse rather than leave fewer convolutions than this in FP16.
    ``ranking_images``: at most this many validation images (those closest to flipping) rank the nodes.
    """

    min_agreement: float = DEFAULT_FP16_MIN_AGREEMENT
    min_fp16_conv_share: float = DEFAULT_MIN_FP16_CONV_SHARE
    ranking_images: int = 64

    def __post_init__(self) -> None:
        for name in ("min_agreement", "min_fp16_conv_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
                raise UserInputError(f"{name}={value!r}: give a fraction between 0 and 1 (e.g. 0.995)")
        if isinstance(self.ranking_images, bool) or not isinstance(self.ranking_images, int) or self.ranking_images < 1:
            raise UserInputError(f"ranking_images={self.ranking_images!r}: give an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Fp16GuardFailedError(CheckFailedError):
    """The FP16 model cannot meet the agreement target within the allowed FP32 fallback; carries the report."""

    def __init__(self, message: str, report: "Fp16GuardReport") -> None:
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class Fp16GuardStep:
    """One measured candidate: AutoCast with ``kept_fp32`` more nodes kept FP32."""

    label: str
    kept_fp32: int
    fp16_convs: int
    agreement: Agreement

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kept_fp32": self.kept_fp32, "fp16_convs": self.fp16_convs, **self.agreement.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Fp16GuardStep":
        return cls(data["label"], int(data["kept_fp32"]), int(data["fp16_convs"]), Agreement.from_dict(data))


@dataclasses.dataclass(frozen=True)
class Fp16GuardReport(GuardVerdict):
    """What the FP16 guard measured and decided; ``passed`` is whether the written model meets the target."""

    METADATA_KEY: ClassVar[str] = "fp16_guard"

    min_fp16_conv_share: float
    kept_fp32: tuple[str, ...]
    fp16_convs: int
    steps: tuple[Fp16GuardStep, ...]
    accuracy: LabelAccuracy | None = None  # where the validation images have labels

    @property
    def fp16_conv_share(self) -> float:
        return self.fp16_convs / self.convs if self.convs else 0.0

    def table(self) -> list[str]:
        """The candidates tried, one row each."""
        return candidate_table("FP16", self.convs, [(s.label, s.agreement, s.fp16_convs) for s in self.steps])

    def lines(self) -> list[str]:
        """The report's one rendering: the step's log, the ``onnx`` summary and the pipeline report."""
        kept = self.kept_fp32
        shown = ", ".join(kept[:10]) + (f", ... ({len(kept)} in all)" if len(kept) > 10 else "")
        return [
            self.agreement_line("FP16"),
            self.validation_line("FP16"),
            f"FP16 guard: convolutions left FP16 {self.fp16_convs}/{self.convs} ({self.fp16_conv_share:.1%}); "
            f"kept FP32 by the guard: {shown or 'none'}; {self.seconds:.1f}s",
            *([self.accuracy.line("FP16")] if self.accuracy is not None else []),
            *self.resolution_lines("FP16"),  # last: what the figures above can show
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict_dict(),
            "min_fp16_conv_share": self.min_fp16_conv_share,
            "kept_fp32_nodes": list(self.kept_fp32),
            "fp16_convs": self.fp16_convs,
            "fp16_conv_share": self.fp16_conv_share,
            "steps": [s.to_dict() for s in self.steps],
            **({"accuracy": self.accuracy.to_dict()} if self.accuracy is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Fp16GuardReport":
        """The report :meth:`to_dict` wrote (``fp16_guard`` metadata, report.json)."""
        return cls(
            **cls.verdict_fields(data),
            min_fp16_conv_share=float(data["min_fp16_conv_share"]),
            kept_fp32=tuple(data.get("kept_fp32_nodes", ())),
            fp16_convs=int(data["fp16_convs"]),
            steps=tuple(Fp16GuardStep.from_dict(x) for x in data.get("steps", ())),
            accuracy=LabelAccuracy.from_dict(data["accuracy"]) if data.get("accuracy") else None,
        )



def guarded_convert_fp16(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    validation: CalibrationSet,
    calibration: CalibrationSet | None = None,
    config: Fp16GuardConfig = Fp16GuardConfig(),
    progress: bool = True,
    labels: np.ndarray | None = None,
) -> PrecisionResult:
    """Write the FP16 (AutoCast) version of ``source`` that agrees with FP32 on ``validation``, or refuse.

    ``calibration``: images for AutoCast's range check (optional, never the validation images).
    ``labels``: the validation images' class indices, when they have labels: the report then shows
    FP32 and FP16 accuracy side by side.
    Raises :class:`Fp16GuardFailedError` (exit code 1) with the table of candidates when the
    target cannot be met; ``output`` is then left as it was. The result's
    ``details["fp16_guard"]`` holds :meth:`Fp16GuardReport.to_dict`.
    """
    started = time.perf_counter()
    if not isinstance(validation, CalibrationSet):
        raise UserInputError(f"validation of type {type(validation).__name__}: give a CalibrationSet")
    if calibration is not None:
        if not isinstance(calibration, CalibrationSet):
            raise UserInputError(f"calibration of type {type(calibration).__name__}: give a CalibrationSet or None")
        check_separate(calibration, validation)
    if not isinstance(config, Fp16GuardConfig):
        raise UserInputError(f"config of type {type(config).__name__}: give an Fp16GuardConfig")
    src = load_source_model(source)
    onnx = require("onnx", "read the FP16 model")
    output = check_output_path(src.path, output)
    images = check_calibration_array(validation.array, src)
    ensure_node_names(src.model)
    reference = onnx_logits(src.model, images)
    ops = {node.name: node.op_type for node in src.model.graph.node}
    convs = sum(op == "Conv" for op in ops.values())
    range_data = None if calibration is None else calibration.array

    steps: list[Fp16GuardStep] = []
    with tempfile.TemporaryDirectory(prefix="dacovid-fp16-guard-") as tmp:

        def attempt(kept: list[str], label: str) -> tuple[Path, PrecisionResult, Agreement, int, np.ndarray]:
            path = Path(tmp) / f"candidate-{len(steps)}.onnx"
            result = convert_fp16(src.path, path, calibration=range_data, keep_fp32=kept)
            logits = onnx_logits(path.read_bytes(), images)
            agreement = measure_agreement(reference, logits)
            fp32 = set(result.fp32_nodes)
            fp16_convs = sum(1 for name, op in ops.items() if op == "Conv" and name not in fp32)
            steps.append(Fp16GuardStep(label, len(kept), fp16_convs, agreement))
            info_if(_logger, f"FP16 guard: {label}: {agreement.describe()}; convolutions FP16 {fp16_convs}/{convs}", progress)
            return path, result, agreement, fp16_convs, logits

        first = attempt([], "AutoCast")
        best = first
        kept: list[str] = []
        if first[2].agreement < config.min_agreement:
            fp32_now = set(first[1].fp32_nodes)
            candidates = [n for n, op in ops.items() if op not in NON_COMPUTE_OPS and op != "Cast" and n not in fp32_now]
            sample = images[at_risk_images(reference, first[4], config.ranking_images)]
            errors = layer_errors(src.model, onnx.load(str(first[0])), sample, candidates)
            ranked = rank_by_error_share(errors, candidates)
            info_if(
                _logger,
                f"FP16 guard: {first[2].agreement:.2%} < {config.min_agreement:.2%}: keeping the {len(ranked)} FP16 nodes "
                "with the largest share of the error in FP32, 1, 2, 4, ... at a time",
                progress,
            )
            allowed = _allowed_prefix(ranked, ops, first[3], convs, config.min_fp16_conv_share)
            count = 1
            while count <= allowed:
                kept = ranked[:count]
                best_now = attempt(kept, f"{count} kept FP32 (to {kept[-1]})")
                if best_now[2].key() > best[2].key():
                    best = best_now
                if best_now[2].agreement >= config.min_agreement:
                    best = best_now
                    break
                if count == allowed:
                    break
                count = min(count * 2, allowed)
        path, result, final_agreement, fp16_convs, final_logits = best
        kept_final = tuple(result.details.get("fp32_by_guard", ()))
        passed = final_agreement.agreement >= config.min_agreement
        report = Fp16GuardReport(
            target=config.min_agreement,
            min_fp16_conv_share=config.min_fp16_conv_share,
            validation=validation.describe() | {"source": _validation_source(calibration, validation)},
            reference="ONNX Runtime CPU, FP32 model",
            before=first[2],
            after=final_agreement,
            kept_fp32=kept_final,
            convs=convs,
            fp16_convs=fp16_convs,
            steps=tuple(steps),
            seconds=time.perf_counter() - started,
            passed=passed,
            accuracy=label_accuracy(labels, reference, first[4], final_logits),
        )
        if not passed:
            raise Fp16GuardFailedError(_failure_message(report), report)
        atomic_write_bytes(output, path.read_bytes())
    for line in report.lines():
        info_if(_logger, line, progress)
    return dataclasses.replace(
        result,
        seconds=time.perf_counter() - started,
        details={**result.details, "fp16_guard_config": config.to_dict()},
        guard=report,
    )


def _allowed_prefix(ranked: list[str], ops: dict[str, str], fp16_convs: int, convs: int, floor: float) -> int:
    """How many of ``ranked`` may be kept FP32 before the convolutions left FP16 fall below ``floor``."""
    left = fp16_convs
    for i, name in enumerate(ranked):
        if ops.get(name) == "Conv":
            if convs and (left - 1) / convs < floor:
                return i
            left -= 1
    return len(ranked)


def _validation_source(calibration: CalibrationSet | None, validation: CalibrationSet) -> str:
    if calibration is not None and validation.root == calibration.root:
        return f"a seeded, class-stratified part of {calibration.root} held out from the range check (seed {validation.seed})"
    return f"{validation.root}, separate from the range-check images"


def _failure_message(report: Fp16GuardReport) -> str:
    return "\n".join(
        [
            f"FP16 accuracy guard: the best FP16 model agrees with FP32 on {report.after.agreement:.2%} of "
            f"{report.after.images} validation images, below the target {report.target:.2%}; nothing was written.",
            *report.table(),
            "What to try: keep the FP32 model (it is exact); more typical validation images (--validation-data); or, "
            "knowingly, a lower --min-agreement (it is recorded in the model's metadata; check's FP16 threshold is 99.5%).",
        ]
    )

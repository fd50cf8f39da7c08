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
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
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
from dacovid_export.calibration.guard_engine import (
    Candidate,
    GuardPolicy,
    PrefixDoubling,
    RankedNode,
    run_guard,
)
from dacovid_export.calibration.guard_report import (
    GuardVerdict,
    LabelAccuracy,
    candidate_table,
    label_accuracy,
)
from dacovid_export.calibration.layer_error import layer_errors, rank_by_error_share
from dacovid_export.calibration.result import PrecisionResult
from dacovid_export.calibration.sensitivity import onnx_logits
from dacovid_export.core.deps import require
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import atomic_write_bytes
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.core.validate import check_fraction, check_int
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
            check_fraction(name, getattr(self, name), why=" (e.g. 0.995)")
        check_int("ranking_images", self.ranking_images, 1)

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



class _Fp16Policy(GuardPolicy):
    """FP16's stages for the guard engine: AutoCast, rank the nodes left FP16 by error share, reconvert with the top
    ones kept FP32 (AutoCast's own ``nodes_to_exclude``)."""

    name = "FP16"

    def __init__(self, src: Any, images: np.ndarray, reference: np.ndarray, range_data: np.ndarray | None,
                 config: Fp16GuardConfig, tmp: Path, progress: bool) -> None:
        self.src, self.images, self.reference, self.range_data = src, images, reference, range_data
        self.target, self.floor, self.ranking_images = config.min_agreement, config.min_fp16_conv_share, config.ranking_images
        self.ops = {node.name: node.op_type for node in src.model.graph.node}
        self.convs = sum(op == "Conv" for op in self.ops.values())
        self.tmp, self.progress, self.made = tmp, progress, 0

    def _convert(self, kept: list[str]) -> tuple[tuple[Path, PrecisionResult], int]:
        path = self.tmp / f"candidate-{self.made}.onnx"
        self.made += 1
        result = convert_fp16(self.src.path, path, calibration=self.range_data, keep_fp32=kept)
        fp32 = set(result.fp32_nodes)
        return (path, result), sum(1 for name, op in self.ops.items() if op == "Conv" and name not in fp32)

    def first(self) -> Iterator[Candidate]:
        model, fp16_convs = self._convert([])
        logits = self.run(model, self.images)
        yield Candidate("AutoCast", model, logits, measure_agreement(self.reference, logits), fp16_convs)

    def rank(self, best: Candidate, at_risk: np.ndarray) -> list[RankedNode]:
        onnx = require("onnx", "read the FP16 model")
        path, result = best.model
        fp32_now = set(result.fp32_nodes)
        candidates = [n for n, op in self.ops.items() if op not in NON_COMPUTE_OPS and op != "Cast" and n not in fp32_now]
        errors = layer_errors(self.src.model, onnx.load(str(path)), self.images[at_risk], candidates)
        ranked = rank_by_error_share(errors, candidates)
        info_if(
            _logger,
            f"FP16 guard: {best.agreement.agreement:.2%} < {self.target:.2%}: keeping the {len(ranked)} FP16 nodes "
            "with the largest share of the error in FP32, 1, 2, 4, ... at a time",
            self.progress,
        )
        return [RankedNode(name, name, self.ops[name]) for name in ranked]

    def build(self, best: Candidate, out: Sequence[RankedNode]) -> tuple[Any, int]:
        return self._convert([n.name for n in out])

    def run(self, model: Any, images: np.ndarray) -> np.ndarray:
        return onnx_logits(model[0].read_bytes(), images)

    def label(self, best: Candidate, out: Sequence[RankedNode]) -> str:
        return f"{len(out)} kept FP32 (to {out[-1].name})"

    def describe(self, candidate: Candidate) -> str:
        return (
            f"FP16 guard: {candidate.label}: {candidate.agreement.describe()}; convolutions FP16 "
            f"{candidate.reduced_convs}/{self.convs}"
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

    The loop is the guard engine's (:mod:`calibration.guard_engine`, prefix doubling) with FP16's policy.
    ``calibration``: images for AutoCast's range check (optional, never the validation images).
    ``labels``: the validation images' class indices, when they have labels: the report then shows
    FP32 and FP16 accuracy side by side.
    Raises :class:`Fp16GuardFailedError` (exit code 1) with the table of candidates when the
    target cannot be met; ``output`` is then left as it was.
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
    output = check_output_path(src.path, output)
    images = check_calibration_array(validation.array, src)
    ensure_node_names(src.model)
    range_data = None if calibration is None else calibration.array
    with tempfile.TemporaryDirectory(prefix="dacovid-fp16-guard-") as tmp:
        policy = _Fp16Policy(src, images, onnx_logits(src.model, images), range_data, config, Path(tmp), progress)
        outcome = run_guard(policy, PrefixDoubling(), progress=progress)
        path, result = outcome.chosen.model
        report = Fp16GuardReport(
            target=config.min_agreement,
            min_fp16_conv_share=config.min_fp16_conv_share,
            validation=validation.describe() | {"source": _validation_source(calibration, validation)},
            reference="ONNX Runtime CPU, FP32 model",
            before=outcome.first.agreement,
            after=outcome.chosen.agreement,
            kept_fp32=tuple(result.details.get("fp32_by_guard", ())),
            convs=policy.convs,
            fp16_convs=outcome.chosen.reduced_convs,
            steps=tuple(Fp16GuardStep(c.label, len(c.out), c.reduced_convs, c.agreement) for c in outcome.tried),
            seconds=time.perf_counter() - started,
            passed=outcome.passed,
            accuracy=label_accuracy(labels, policy.reference, outcome.first.logits, outcome.chosen.logits),
        )
        if not report.passed:
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

"""Accuracy-guarded INT8: calibrate, measure against FP32 on unseen images, take the costliest nodes out of INT8.

The loop (after NNCF's ``quantize_with_accuracy_control`` and Polygraphy's ``debug precision``):

1. Calibrate with each method in ``GuardConfig.methods`` (cached, see ``calibration.int8``)
   and measure top-1 agreement and |Δlogit| against the FP32 model in ONNX Runtime (CPU)
   on validation images calibration never saw. The first method that meets
   ``min_agreement`` is kept; when none does, the best one goes on to step 2.
2. Rank every quantized node by its share of the error it passes on (:mod:`calibration.layer_error`:
   the FP32 and the INT8 model run once each on the at-risk images, every node's output compared),
   then measure only the ``measured_candidates`` top ones by what taking each alone out of
   INT8 restores (:mod:`calibration.sensitivity`; one session and one pass per node, the
   guard's cost: 77 nodes on DA-COVID Net). Take nodes out cumulatively: first the measured
   ones that fixed answers (best first), then the unmeasured rest in the statistic's order,
   last the measured ones that fixed none; each in FP16 where its activations fit and FP32
   otherwise (:mod:`calibration.fallback`), until the agreement holds on the whole validation set.
   Each cumulative candidate runs first on the at-risk images (a subset: what differs there differs
   on the whole set), and on the whole set only when the target is still reachable; the others are
   marked ``*`` in the table.
3. Stop with :class:`GuardFailedError` (the table of what was tried, and what to try next)
   when the target is not reached before the share of convolutions left in INT8 would
   fall below ``min_int8_conv_share``: an "INT8" model that is mostly FP32 is not one.

The report (:class:`GuardReport`) goes to stdout and into the model's metadata.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dacovid_export.artifacts.onnx_graph import attention_feeders
from dacovid_export.calibration.cache import CalibrationCache
from dacovid_export.calibration.data import CalibrationSet, check_separate
from dacovid_export.calibration.fallback import (
    FallbackDtype,
    FallbackNode,
    activation_peaks,
    choose_fallback_dtype,
    unquantize,
)
from dacovid_export.calibration.graph import (
    check_calibration_array,
    load_source_model,
    write_checked_model,
)
from dacovid_export.calibration.guard_engine import (
    Candidate,
    GuardOutcome,
    GuardPolicy,
    RankedNode,
    ScreenedCumulative,
    run_guard,
)
from dacovid_export.calibration.guard_report import (
    GuardVerdict,
    LabelAccuracy,
    candidate_table,
    label_accuracy,
)
from dacovid_export.calibration.int8 import (
    CALIBRATION_METHODS,
    calibrate_cached,
    int8_details,
    prepare_int8,
)
from dacovid_export.calibration.layer_error import layer_errors, rank_by_error_share
from dacovid_export.calibration.qat_record import PtqBaseline, QatRecord
from dacovid_export.calibration.qdq import check_qdq, inspect_qdq
from dacovid_export.calibration.result import PrecisionResult
from dacovid_export.calibration.sensitivity import (
    NodeSensitivity,
    labels_from_weights,
    onnx_logits,
    openvino_logits,
    rank_nodes,
)
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.core.validate import check_fraction, check_int
from dacovid_export.data.agreement import Agreement, measure_agreement

if TYPE_CHECKING:
    import onnx

__all__ = [
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_MIN_INT8_CONV_SHARE",
    "GuardConfig",
    "GuardStep",
    "GuardReport",
    "GuardFailedError",
    "NoiseCeiling",
    "input_step",
    "noise_ceiling",
    "guarded_quantize_int8",
    "calibrated_agreement",
    "int8_conv_share",
]

_logger = get_logger("calibration")

DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_MIN_INT8_CONV_SHARE = 0.8


class GuardFailedError(CheckFailedError):
    """The INT8 model cannot meet the agreement target within the allowed fallback; carries the report."""

    def __init__(self, message: str, report: "GuardReport") -> None:
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    """Options of the accuracy guard, validated on construction.

    ``min_agreement``: top-1 agreement with FP32 the INT8 model must reach on the validation images.
    ``methods``: calibration methods tried in order (first to meet the target wins).
    ``min_int8_conv_share``: refuse rather than leave fewer convolutions than this in INT8.
    ``fallback_dtype``: ``"fp16"`` (FP32 only where FP16 is unsafe) or ``"fp32"`` for every restored node.
    ``ranking_images``: at most this many at-risk validation images in the sensitivity pass.
    ``measured_candidates``: how many of the nodes that add the most error are then measured by
    restoring each alone (one ONNX Runtime session and pass each: the guard's main cost).
    """

    min_agreement: float = DEFAULT_MIN_AGREEMENT
    methods: tuple[str, ...] = CALIBRATION_METHODS
    min_int8_conv_share: float = DEFAULT_MIN_INT8_CONV_SHARE
    fallback_dtype: FallbackDtype = "fp16"
    ranking_images: int = 64
    measured_candidates: int = 12

    def __post_init__(self) -> None:
        for name in ("min_agreement", "min_int8_conv_share"):
            check_fraction(name, getattr(self, name), why=" (e.g. 0.99)")
        methods = tuple(self.methods) if isinstance(self.methods, (list, tuple)) else ()
        if not methods or any(m not in CALIBRATION_METHODS for m in methods) or len(set(methods)) != len(methods):
            raise UserInputError(
                f"methods={self.methods!r}: give one or more distinct calibration methods of {', '.join(CALIBRATION_METHODS)}"
            )
        object.__setattr__(self, "methods", methods)
        if self.fallback_dtype not in ("fp16", "fp32"):
            raise UserInputError(f"fallback_dtype={self.fallback_dtype!r}: choose 'fp16' or 'fp32'")
        for name in ("ranking_images", "measured_candidates"):
            check_int(name, getattr(self, name), 1)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "methods": list(self.methods)}


@dataclasses.dataclass(frozen=True)
class GuardStep:
    """One measured candidate: a calibration method, with some nodes taken out of INT8.

    ``screened``: measured on the at-risk validation images only, where it already differed from
    FP32 on too many to reach the target on all of them (the whole set was then not run).
    """

    label: str
    method: str
    excluded: int
    int8_convs: int
    agreement: Agreement
    screened: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "excluded": self.excluded, "int8_convs": self.int8_convs,
                "screened": self.screened, **self.agreement.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GuardStep":
        return cls(data["label"], data["method"], int(data["excluded"]), int(data["int8_convs"]), Agreement.from_dict(data),
                   bool(data.get("screened", False)))


# INT8's step on the normalised input when the model does not say (ImageNet mean/std: |x| <= 2.64 -> 2.64 / 127)
DEFAULT_INPUT_STEP = 2.64 / 127


@dataclasses.dataclass(frozen=True)
class NoiseCeiling:
    """How steady the FP32 model itself is: its top-1 agreement with itself under Gaussian input noise.

    ``sigma`` is half of INT8's input step (normalised units), about what rounding the input to
    INT8 adds; when FP32 already changes more answers than the target allows under it, no INT8 model can
    reach the target, and the lever is the checkpoint, not the quantizer.
    """

    sigma: float
    agreement: float
    images: int

    def below(self, target: float) -> bool:
        return self.agreement < target

    def line(self, target: float) -> str:
        text = (
            f"INT8 guard: FP32 against itself under input noise of sigma {self.sigma:.3g} (half INT8's input step): "
            f"{self.agreement:.2%} of {self.images} unseen images keep their answer"
        )
        if self.below(target):
            text += (
                f", below the target {target:.2%}: no quantizer can reach it; the lever is the checkpoint (train longer, "
                "with input noise or stronger augmentation), not the precision step"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NoiseCeiling":
        return cls(float(data["sigma"]), float(data["agreement"]), int(data["images"]))


def input_step(model: "onnx.ModelProto") -> float | None:
    """INT8's step on the network input: the scale of the QuantizeLinear that reads the graph input (None: none does)."""
    from onnx import numpy_helper

    name = model.graph.input[0].name
    constants = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants.setdefault(node.output[0], node.attribute[0].t)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == name and node.input[1] in constants:
            return float(np.max(numpy_helper.to_array(constants[node.input[1]])))
    return None


def noise_ceiling(
    model: "onnx.ModelProto | bytes", images: np.ndarray, reference: np.ndarray, sigma: float, *, seed: int = 0
) -> NoiseCeiling:
    """FP32 ``model``'s agreement with its own clean ``reference`` logits on ``images`` plus N(0, sigma) noise."""
    rng = np.random.default_rng(seed)
    noisy = (images + rng.normal(0.0, sigma, images.shape)).astype(np.float32)
    agreement = measure_agreement(reference, onnx_logits(model, noisy))
    return NoiseCeiling(float(sigma), agreement.agreement, agreement.images)


@dataclasses.dataclass(frozen=True)
class GuardReport(GuardVerdict):
    """What the INT8 guard measured and decided; ``passed`` is whether the written model meets the target.

    ``ranking``: the sensitivity pass's nodes (the dict form keeps the first 20). ``qat``: the
    quantization-aware fine-tune's record when the model came from one.
    """

    METADATA_KEY: ClassVar[str] = "int8_guard"

    min_int8_conv_share: float
    method: str
    excluded: tuple[FallbackNode, ...]
    int8_convs: int
    steps: tuple[GuardStep, ...]
    ranking: tuple[NodeSensitivity, ...]
    after_openvino: Agreement | None = None  # the written model under OpenVINO (FP32 precision set), for the record
    qat: QatRecord | None = None
    accuracy: LabelAccuracy | None = None  # where the validation images have labels
    # FP32 against itself under input noise of half INT8's input step, measured before any fallback search
    stability: NoiseCeiling | None = None

    @property
    def int8_conv_share(self) -> float:
        return self.int8_convs / self.convs if self.convs else 0.0

    def table(self) -> list[str]:
        """The candidates tried, one row each (``*``: screened on the at-risk images only)."""
        rows = [(("* " if s.screened else "") + s.label, s.agreement, s.int8_convs) for s in self.steps]
        out = candidate_table("INT8", self.convs, rows)
        screened = [s for s in self.steps if s.screened]
        if screened:
            out.append(
                f"  * on the {screened[0].agreement.images} validation images closest to flipping only: already too many "
                "differ there to reach the target on all, so the whole set was not run"
            )
        return out

    def lines(self) -> list[str]:
        """The report's one rendering: the step's log, the ``onnx`` summary and the pipeline report."""
        excluded = self.excluded
        shown = ", ".join(f"{n.label} ({n.dtype})" for n in excluded[:10]) + (
            f", ... ({len(excluded)} in all)" if len(excluded) > 10 else ""
        )
        out = [
            self.agreement_line("INT8", f"{self.method} calibration; "),
            self.validation_line("INT8"),
            f"INT8 guard: convolutions left INT8 {self.int8_convs}/{self.convs} ({self.int8_conv_share:.1%}); "
            f"out of INT8: {shown or 'none'}; {self.seconds:.1f}s",
        ]
        if (q := self.qat) is not None:
            out.append(
                f"INT8 guard: QAT {q.epochs} epoch(s) on {q.train_images} training images "
                f"({'reused ' if q.reused else ''}{q.checkpoint}), {q.seconds:.0f}s; judged "
                "against the original checkpoint's FP32 model"
            )
            if (ptq := q.before) is not None:
                accuracy = f", accuracy {ptq.accuracy:.2%}" if ptq.accuracy is not None else ""
                # the QAT model's own figure is the guard's first candidate (``before``); ``after`` adds the fallback
                guarded = (
                    f" -> after the guard's fallback {self.after.agreement:.2%}"
                    + (f", accuracy {self.accuracy.after:.2%}" if accuracy and self.accuracy is not None else "")
                    if self.excluded else ""
                )
                out.append(
                    f"INT8 guard: agreement with FP32 before QAT ({ptq.method} calibration alone) "
                    f"{ptq.agreement.agreement:.2%}{accuracy} -> after QAT {self.before.agreement:.2%}"
                    + (f", accuracy {self.accuracy.before:.2%}" if accuracy and self.accuracy is not None else "")
                    + guarded
                )
        if self.accuracy is not None:
            out.append(self.accuracy.line("INT8"))
        if self.stability is not None:
            out.append(self.stability.line(self.target))
        if (ov := self.after_openvino) is not None:
            out.append(
                f"INT8 guard: under OpenVINO (CPU, FP32 set around INT8): agreement {ov.agreement:.2%}, "
                f"|Δlogit| median {ov.median_abs_dlogit:.3g} max {ov.max_abs_dlogit:.3g}"
            )
            if self.passed and ov.agreement < self.target:
                # OpenVINO is what `auto` runs INT8 with on the CPU, and TensorRT rounds differently again
                out.append(
                    f"INT8 guard: warning: below the target {self.target:.2%} under OpenVINO: some answers are closer than "
                    "two INT8 runtimes' rounding differences; check the model where it will run (dacovid-export check)"
                )
        return [*out, *self.resolution_lines("INT8")]  # last: what the figures above can show

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict_dict(),
            "min_int8_conv_share": self.min_int8_conv_share,
            "method": self.method,
            "excluded_nodes": [n.to_dict() for n in self.excluded],
            "int8_convs": self.int8_convs,
            "int8_conv_share": self.int8_conv_share,
            "steps": [s.to_dict() for s in self.steps],
            "ranking_top": [r.to_dict() for r in self.ranking[:20]],
            "after_openvino": None if self.after_openvino is None else self.after_openvino.to_dict(),
            **({"qat": self.qat.to_dict()} if self.qat is not None else {}),
            **({"accuracy": self.accuracy.to_dict()} if self.accuracy is not None else {}),
            **({"stability": self.stability.to_dict()} if self.stability is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GuardReport":
        """The report :meth:`to_dict` wrote (``int8_guard`` metadata, report.json)."""
        ov = data.get("after_openvino")
        return cls(
            **cls.verdict_fields(data),
            min_int8_conv_share=float(data["min_int8_conv_share"]),
            method=str(data["method"]),
            excluded=tuple(FallbackNode.from_dict(n) for n in data.get("excluded_nodes", ())),
            int8_convs=int(data["int8_convs"]),
            steps=tuple(GuardStep.from_dict(x) for x in data.get("steps", ())),
            ranking=tuple(NodeSensitivity.from_dict(r) for r in data.get("ranking_top", ())),
            after_openvino=None if ov is None else Agreement.from_dict(ov),
            qat=QatRecord.from_dict(data["qat"]) if data.get("qat") else None,
            accuracy=LabelAccuracy.from_dict(data["accuracy"]) if data.get("accuracy") else None,
            stability=NoiseCeiling.from_dict(data["stability"]) if data.get("stability") else None,
        )


def int8_conv_share(model: "onnx.ModelProto") -> tuple[int, int]:
    """``(convolutions with a dequantized input, all convolutions)`` of a Q/DQ model."""
    quantized = set(inspect_qdq(model).quantized_nodes)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    return sum(name in quantized for name in convs), len(convs)



class _Int8Policy(GuardPolicy):
    """INT8's stages for the guard engine: calibrate per method, the stability figure, rank by error share and by
    restoration, take nodes back to FP16/FP32 (:mod:`calibration.fallback`)."""

    name = "INT8"

    def __init__(self, prepared: Any, calibration: CalibrationSet, images: np.ndarray, reference: np.ndarray,
                 judged: "onnx.ModelProto", config: GuardConfig, cache: CalibrationCache, progress: bool) -> None:
        self.prepared, self.calibration, self.images, self.reference = prepared, calibration, images, reference
        self.judged = judged  # the FP32 model the answers are compared with (after QAT: the original checkpoint's)
        self.config, self.cache, self.progress = config, cache, progress
        self.target, self.floor, self.ranking_images = config.min_agreement, config.min_int8_conv_share, config.ranking_images
        self.convs = sum(n.op_type == "Conv" for n in prepared.src.model.graph.node)
        self.stability: NoiseCeiling | None = None
        self.sensitivity: list[NodeSensitivity] = []
        self.dtypes: dict[str, tuple[FallbackDtype, str]] = {}

    def first(self) -> Iterator[Candidate]:
        p = self.prepared
        for method in self.config.methods:
            calibrated = calibrate_cached(p.src, self.calibration, p.array, method, p.excluded, self.cache)
            check_qdq(calibrated.model, p.chains)
            logits = onnx_logits(calibrated.model_bytes, self.images)
            int8, _ = int8_conv_share(calibrated.model)
            yield Candidate(f"{method} calibration", calibrated.model, logits, measure_agreement(self.reference, logits),
                            int8, source=calibrated)

    def ready(self, best: Candidate) -> bool:
        """Can any INT8 model reach the target, or does FP32 itself flip under INT8-sized input noise?"""
        step = input_step(best.model) or DEFAULT_INPUT_STEP
        self.stability = noise_ceiling(self.judged, self.images, self.reference, step / 2)
        info_if(_logger, self.stability.line(self.target), self.progress)
        return not self.stability.below(self.target)  # else refused with the figure: no search can succeed

    def reduced_at_start(self, best: Candidate) -> int:
        return self.convs

    def rank(self, best: Candidate, at_risk: np.ndarray) -> list[RankedNode]:
        """Rank by error share, measure the top ones by restoration; measured evidence first."""
        src, base = self.prepared.src, best.model
        quantized = list(inspect_qdq(base).quantized_nodes)
        ops = {n.name: n.op_type for n in base.graph.node}
        peaks = activation_peaks(src.model, self.images, quantized)
        feeders = attention_feeders(src.model, self.prepared.chains)
        self.dtypes = {
            name: choose_fallback_dtype(name, peaks.get(name, math.inf), feeders, self.config.fallback_dtype)
            for name in quantized
        }
        labels = labels_from_weights(base, quantized)
        measured_count = min(self.config.measured_candidates, len(quantized))
        info_if(
            _logger,
            f"INT8 guard: {best.agreement.agreement:.2%} < {self.target:.2%}: ranking {len(quantized)} quantized nodes "
            f"by their share of the error, then measuring the top {measured_count} by restoration, on the {len(at_risk)} "
            "validation images closest to flipping",
            self.progress,
        )
        # against ``src`` (after QAT the fine-tuned FP32 model, not the judged reference): the INT8 graph's own float
        # twin, so every node's error is INT8's and not the fine-tune's
        errors = layer_errors(src.model, base, self.images[at_risk], quantized)
        by_error = rank_by_error_share(errors, quantized)
        measured = rank_nodes(
            base, {name: self.dtypes[name][0] for name in by_error[:measured_count]}, self.images[at_risk],
            self.reference[at_risk], best.logits[at_risk], labels=labels, progress=self.progress,
        )
        self.sensitivity = [
            dataclasses.replace(e, error_share=errors[e.node].share if e.node in errors else None) for e in measured
        ]
        # a node whose restoration alone fixed no answer goes behind the unmeasured rest
        order = [(e.node, e.label) for e in self.sensitivity if e.fixed > 0]
        order += [(name, labels.get(name, name)) for name in by_error[measured_count:]]
        order += [(e.node, e.label) for e in self.sensitivity if e.fixed <= 0]
        return [RankedNode(name, label, ops.get(name, "?")) for name, label in order]

    def build(self, best: Candidate, out: Sequence[RankedNode]) -> tuple[Any, int]:
        candidate = unquantize(best.model, {n.name: self.dtypes[n.name][0] for n in out})
        return candidate, int8_conv_share(candidate)[0]

    def run(self, model: Any, images: np.ndarray) -> np.ndarray:
        return onnx_logits(model, images)

    def label(self, best: Candidate, out: Sequence[RankedNode]) -> str:
        return f"{best.source.method} + {len(out)} out: +{out[-1].label}"

    def describe(self, candidate: Candidate) -> str:
        if not candidate.out:
            return f"INT8 guard: {candidate.label}: {candidate.agreement.describe()}"
        last = candidate.out[-1]
        return (
            f"INT8 guard: {len(candidate.out)} node(s) out of INT8 (+{last.label}, {self.dtypes[last.name][0]}): "
            f"{candidate.agreement.describe()}"
        )

    def fallback_nodes(self, out: Sequence[RankedNode]) -> tuple[FallbackNode, ...]:
        return tuple(FallbackNode(n.name, n.op_type, n.label, *self.dtypes[n.name]) for n in out)

    def steps(self, outcome: GuardOutcome) -> tuple[GuardStep, ...]:
        return tuple(
            GuardStep(c.label, c.source.method, len(c.out), c.reduced_convs, c.agreement, screened=c.screened)
            for c in outcome.tried
        )


def guarded_quantize_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    calibration: CalibrationSet,
    validation: CalibrationSet,
    config: GuardConfig = GuardConfig(),
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    reference_model: str | os.PathLike[str] | None = None,
    qat: QatRecord | None = None,
    qat_hint: str | None = None,
    labels: np.ndarray | None = None,
) -> PrecisionResult:
    """Write the INT8 (Q/DQ) version of ``source`` that agrees with FP32 on ``validation``, or refuse.

    The loop is the guard engine's (:mod:`calibration.guard_engine`: measure each calibration
    method, the stability figure, rank, floor, screened cumulative search) with INT8's policy.
    ``reference_model``: the FP32 ONNX model the guard judges against when it is not ``source``
    (after quantization-aware fine-tuning: the ORIGINAL checkpoint's FP32 model, ``source`` being
    the fine-tuned one); ``qat``: the fine-tune's record, stored in the report. ``qat_hint``: how
    this user turns on quantization-aware fine-tuning (the exact command), named first in a refusal
    of a calibrated model; ``None``: a generic example. ``labels``: the validation images' class
    indices, when they have labels: the report then shows FP32 and INT8 accuracy side by side.

    ``calibration``/``validation``: disjoint image sets (:func:`split_calibration_set`, or
    :func:`load_validation_set` for separate images). Raises :class:`GuardFailedError` (a
    :class:`CheckFailedError`, exit code 1) with the table of candidates when the target
    cannot be met; ``output`` is then left as it was.
    """
    started = time.perf_counter()
    for name, value in (("calibration", calibration), ("validation", validation)):
        if not isinstance(value, CalibrationSet):
            raise UserInputError(f"{name} of type {type(value).__name__}: give a CalibrationSet")
    if not isinstance(config, GuardConfig):
        raise UserInputError(f"config of type {type(config).__name__}: give a GuardConfig")
    check_separate(calibration, validation)  # the same file under any name, or a copy: never "separate"
    prepared = prepare_int8(source, output, calibration)
    images = check_calibration_array(validation.array, prepared.src)
    judged = prepared.src.model if reference_model is None else load_source_model(reference_model).model
    policy = _Int8Policy(prepared, calibration, images, onnx_logits(judged, images), judged, config,
                         CalibrationCache(cache_dir), progress)
    outcome = run_guard(policy, ScreenedCumulative(), progress=progress)
    report = _int8_report(policy, outcome, validation, calibration, started, qat=qat, labels=labels,
                          judged_by_original=reference_model is not None)
    if not report.passed:
        raise GuardFailedError(_failure_message(report, qat=qat is not None, qat_hint=qat_hint), report)
    return _write_int8(policy, outcome, report, started)


def _int8_report(
    policy: _Int8Policy, outcome: GuardOutcome, validation: CalibrationSet, calibration: CalibrationSet,
    started: float, *, qat: QatRecord | None, labels: np.ndarray | None, judged_by_original: bool,
) -> GuardReport:
    chosen, first = outcome.chosen, outcome.first
    return GuardReport(
        target=policy.target,
        min_int8_conv_share=policy.floor,
        validation=validation.describe() | {"source": _validation_source(calibration, validation)},
        reference="ONNX Runtime CPU, FP32 model" + (" of the original checkpoint (before QAT)" if judged_by_original else ""),
        method="qat + " + first.source.method if qat is not None else first.source.method,
        before=first.agreement,
        after=chosen.agreement,
        excluded=policy.fallback_nodes(chosen.out),
        convs=policy.convs,
        int8_convs=chosen.reduced_convs,
        steps=policy.steps(outcome),
        ranking=tuple(policy.sensitivity),
        seconds=time.perf_counter() - started,
        passed=outcome.passed,
        qat=qat,
        accuracy=None if labels is None else label_accuracy(labels, policy.reference, first.logits, chosen.logits),
        stability=policy.stability,
    )


def _write_int8(policy: _Int8Policy, outcome: GuardOutcome, report: GuardReport, started: float) -> PrecisionResult:
    """Write the chosen model, run it under OpenVINO for the record, and say what it is."""
    prepared, chosen = policy.prepared, outcome.chosen
    summary = check_qdq(chosen.model, prepared.chains)
    digest = write_checked_model(chosen.model.SerializeToString(), prepared.output)
    ov_logits = openvino_logits(str(prepared.output), policy.images)
    if ov_logits is not None:
        report = dataclasses.replace(
            report, after_openvino=measure_agreement(policy.reference, ov_logits), seconds=time.perf_counter() - started
        )
    details = int8_details(
        prepared, policy.calibration, chosen.source, summary, digest,
        tool="modelopt.onnx.quantization.quantize + dacovid_export accuracy guard",
    ) | {"guard_config": policy.config.to_dict()}
    for line in (*report.table(), *report.lines()):
        info_if(_logger, line, policy.progress)
    fp16 = {n.name for n in report.excluded if n.dtype == "fp16"}
    return PrecisionResult(
        precision="int8",
        fp32_nodes=tuple(n for n in summary.fp32_nodes if n not in fp16),
        seconds=time.perf_counter() - started,
        cache_hit=chosen.source.cache_hit,
        details=details,
        guard=report,
    )


def calibrated_agreement(
    source: str | os.PathLike[str],
    *,
    calibration: CalibrationSet,
    validation: CalibrationSet,
    method: str,
    cache_dir: str | os.PathLike[str] | None = None,
    labels: np.ndarray | None = None,
) -> PtqBaseline:
    """Agreement with ``source`` (FP32) of its plainly calibrated INT8 model (no fallback), and accuracy where labelled.

    What post-training quantization alone gives: the "before" a quantization-aware fine-tune is
    judged against. The calibrated model comes from (and goes to) the same cache as the guard's.
    """
    check_separate(calibration, validation)
    prepared = prepare_int8(source, None, calibration)
    src = prepared.src
    images = check_calibration_array(validation.array, src)
    calibrated = calibrate_cached(src, calibration, prepared.array, method, prepared.excluded, CalibrationCache(cache_dir))
    reference = onnx_logits(src.model, images)
    logits = onnx_logits(calibrated.model_bytes, images)
    accuracy = label_accuracy(labels, reference, logits, logits)
    return PtqBaseline(method, measure_agreement(reference, logits), None if accuracy is None else accuracy.after)


def _validation_source(calibration: CalibrationSet, validation: CalibrationSet) -> str:
    if validation.root == calibration.root:
        return (
            f"a seeded, class-stratified part of {calibration.root} held out from calibration (seed {validation.seed})"
        )
    return f"{validation.root}, separate from the calibration images"


def _failure_message(report: GuardReport, *, qat: bool = False, qat_hint: str | None = None) -> str:
    hint = qat_hint or (
        "the same command with --qat added (e.g. `dacovid-export onnx CKPT -o OUT --precision int8 --calib-data DATA "
        "--qat`: fine-tunes on the run's training images, --train-data DIR otherwise)"
    )
    if report.stability is not None and report.stability.below(report.target):
        return "\n".join([
            f"INT8 accuracy guard: the calibrated INT8 model agrees with FP32 on {report.after.agreement:.2%} of "
            f"{report.after.images} unseen validation images, below the target {report.target:.2%}; nothing was written.",
            *report.table(),
            report.stability.line(report.target),
            "The checkpoint is to blame, not the step: its answers sit so close to its decision boundaries that "
            "INT8-sized input noise alone moves them. What to try: a steadier checkpoint (more epochs; input noise or "
            "stronger augmentation in training); FP16 instead of INT8 (--precision fp16); or, knowingly, a "
            f"--min-agreement at most {report.stability.agreement:.2%} (recorded in the model's metadata).",
        ])
    lines = [
        f"INT8 accuracy guard: the best INT8 model agrees with FP32 on {report.after.agreement:.2%} of "
        f"{report.after.images} validation images, below the target {report.target:.2%}; nothing was written.",
        *report.table(),
        (
            "What to try: more fine-tuning (--qat-epochs, --qat-lr); more or more typical calibration images; FP16 "
            "instead of INT8 (--precision fp16); or, knowingly, a lower --min-agreement (recorded in the model's metadata)."
            if qat
            else f"What to try: first quantization-aware fine-tuning: {hint}; more or more typical calibration images (--calib-size, --calib-data); "
            "the other --calib-method; FP16 instead of INT8 (--precision fp16); or, knowingly, a lower --min-agreement "
            "(it is recorded in the model's metadata)."
        ),
    ]
    return "\n".join(lines)

"""What the accuracy guards' reports share: the verdict fields, its rendering and its dict form.

The INT8 (:class:`~dacovid_export.calibration.guard.GuardReport`) and FP16
(:class:`~dacovid_export.calibration.fp16_guard.Fp16GuardReport`) guards both judge a
candidate against the FP32 model on held-out images, before and after taking nodes out
of the reduced precision; :class:`GuardVerdict` holds that common part once. Each report
is a dataclass from the guard to the ONNX metadata and the pipeline report: ``to_dict``
writes it, ``from_dict`` reads the same object back, and ``lines()`` is its one rendering.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.agreement import Agreement
from dacovid_export.data.evidence import NO_RECORD

__all__ = [
    "AccuracyReport",
    "GuardVerdict",
    "LabelAccuracy",
    "candidate_table",
    "evidence_line",
    "images_to_resolve",
    "label_accuracy",
    "resolution_text",
    "resolution_warning",
    "validation_fingerprints",
]


class AccuracyReport(Protocol):
    """Any guard's report (INT8 ``GuardReport``, ``Fp16GuardReport``, ``Bf16GuardReport``): what callers rely on."""

    METADATA_KEY: ClassVar[str]  # the ONNX metadata and report.json key it is written under
    validation: Mapping[str, Any]  # CalibrationSet.describe() of the validation images, their evidence included

    def lines(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


def resolution_text(images: int) -> str:
    """The smallest difference in agreement ``images`` validation images can show: one image, 1/n."""
    if images <= 0:
        return "no validation images"
    return f"resolution {_percent(1 / images)} = 1 of {images} images"


def _percent(fraction: float) -> str:
    """Three significant digits: 16.7%, 1%, 0.503% (two decimals would show 1/199 and 0.5% both as 0.50%)."""
    return f"{100 * fraction:.3g}%"


def images_to_resolve(target: float) -> int:
    """The fewest validation images whose resolution (1/n) is no larger than the margin ``1 - target`` (1 at 100%)."""
    margin = 1.0 - target
    return 1 if margin <= 0 else math.ceil(1.0 / margin - 1e-9)


def resolution_warning(name: str, images: int, target: float) -> list[str]:
    """One warning line where 1/n is larger than the margin between ``target`` and 100%, else none.

    Agreement on ``n`` images moves in steps of 1/n: when one differing image is more than the margin, a pass
    needs every image to agree, and the figure cannot tell a model at the target from one a whole step below it.
    """
    if images <= 0 or target >= 1.0 or 1.0 / images <= (1.0 - target) + 1e-12:
        return []
    return [
        f"{name} guard: WARNING: {images} validation images cannot resolve the target {target:.2%}: one differing "
        f"image moves agreement by {_percent(1 / images)}, more than the {_percent(1 - target)} between the target and "
        f"100%; {images_to_resolve(target)} or more validation images resolve it"
    ]


@dataclasses.dataclass(frozen=True)
class GuardVerdict:
    """A guard's verdict: target agreement with FP32, the images judged on, agreement before/after, time, pass."""

    target: float
    validation: Mapping[str, Any]
    reference: str
    before: Agreement
    after: Agreement
    convs: int
    seconds: float
    passed: bool

    def agreement_line(self, name: str, lead: str = "") -> str:
        """``<name> guard: [lead]agreement ... before -> after (target); |Δlogit| ...``."""
        before, after = self.before, self.after
        return (
            f"{name} guard: {lead}agreement with FP32 on {after.images} validation images {before.agreement:.2%} -> "
            f"{after.agreement:.2%} (target {self.target:.2%}; {resolution_text(after.images)}); |Δlogit| median {before.median_abs_dlogit:.3g} -> "
            f"{after.median_abs_dlogit:.3g}, max {before.max_abs_dlogit:.3g} -> {after.max_abs_dlogit:.3g}"
        )

    def resolution_lines(self, name: str) -> list[str]:
        """The warning of :func:`resolution_warning` for this verdict's validation images, or nothing."""
        return resolution_warning(name, self.after.images, self.target)

    def validation_line(self, name: str) -> str:
        return f"{name} guard: validation images: {self.validation.get('source')}; {evidence_line(self.validation)}"

    def verdict_dict(self) -> dict[str, Any]:
        """The common part of the report's dict form (metadata keys kept from the first format)."""
        return {
            "target_agreement": self.target,
            "validation": dict(self.validation),
            "reference": self.reference,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "convs": self.convs,
            "seconds": self.seconds,
            "passed": self.passed,
        }

    @staticmethod
    def verdict_fields(data: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments of the common part, read from :meth:`verdict_dict`'s form."""
        return {
            "target": float(data["target_agreement"]),
            "validation": dict(data["validation"]),
            "reference": str(data["reference"]),
            "before": Agreement.from_dict(data["before"]),
            "after": Agreement.from_dict(data["after"]),
            "convs": int(data["convs"]),
            "seconds": float(data["seconds"]),
            "passed": bool(data["passed"]),
        }


def evidence_line(validation: Mapping[str, Any]) -> str:
    """What the validation images stand on: ``N unseen validation images, M excluded as training images (...)``.

    From the evidence :func:`dacovid_export.calibration.data.split_calibration_set` and
    :func:`~dacovid_export.calibration.data.load_validation_set` record; a report from before them says so.
    """
    if "training_record" not in validation:
        return "not recorded whether they trained the checkpoint (a model made before this was checked)"
    record = validation.get("training_record")
    if record is None:
        return NO_RECORD
    text = (
        f"{validation.get('unseen')} unseen validation images, {validation.get('excluded_training')} excluded as "
        f"training images (by {record})"
    )
    left = validation.get("left_for_check")
    if left is not None:
        text += f"; {left} unseen image(s) left for `check`, which sets the guard's aside"
    return text


def validation_fingerprints(report: AccuracyReport | None) -> tuple[str, ...]:
    """The content fingerprints of the images a guard chose its model on (``check`` sets them aside)."""
    if report is None:
        return ()
    return tuple(str(f) for f in report.validation.get("fingerprints", ()))


@dataclasses.dataclass(frozen=True)
class LabelAccuracy:
    """Accuracy on the labelled validation images: FP32, and the reduced-precision model before and after the guard.

    Agreement says whether answers change; this says whether accuracy does (a changed answer can
    be a fixed mistake). ``before``: the first candidate judged (calibrated / AutoCast), ``after``: the
    model written (after fallback, or QAT).
    """

    images: int
    fp32: float
    before: float
    after: float

    def line(self, name: str) -> str:
        return (
            f"{name} guard: accuracy on the {self.images} labelled validation images: FP32 {self.fp32:.2%}, "
            f"{name} {self.before:.2%} -> {self.after:.2%} (before -> after the guard)"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelAccuracy":
        return cls(int(data["images"]), float(data["fp32"]), float(data["before"]), float(data["after"]))


def label_accuracy(
    labels: np.ndarray | None, fp32: np.ndarray, before: np.ndarray, after: np.ndarray
) -> LabelAccuracy | None:
    """:class:`LabelAccuracy` of three ``N x K`` logits against ``labels`` (``None``: the images have no labels)."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != (len(fp32),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserInputError(
            f"labels of shape {labels.shape} ({labels.dtype}): give one class index per validation image ({len(fp32)})"
        )

    def accuracy(logits: np.ndarray) -> float:
        return float(np.mean(np.argmax(logits, axis=1) == labels))

    return LabelAccuracy(len(labels), accuracy(fp32), accuracy(before), accuracy(after))


def candidate_table(kind: str, convs: int, rows: Sequence[tuple[str, Agreement, int]]) -> list[str]:
    """The candidates a guard tried, one row each: ``(label, agreement, convolutions left in <kind>)``."""
    out = [f"  {'candidate':<44} {'agreement':>9} {'|Δlogit| med':>12} {'max':>7} {kind + ' convs':>11}"]
    for label, a, kept in rows:
        out.append(
            f"  {label[:44]:<44} {a.agreement:>9.2%} {a.median_abs_dlogit:>12.3g} {a.max_abs_dlogit:>7.3g} {kept:>5}/{convs:<5}"
        )
    return out

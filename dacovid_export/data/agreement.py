"""How close two sets of logits are: the one home of logit comparison (softmax, tolerance checks, agreement).

Three questions, three names, all on ``N x K`` logits of the same images:

- :func:`compare_numeric` (:class:`NumericComparison`): is a runtime's output the
  same computation within ``atol + rtol * max|reference|``? The export's
  self-check (FP32 ONNX against PyTorch, FP16/INT8 against FP32).
- :func:`measure_agreement` (:class:`Agreement`): how many answers changed, and by
  how much the logits moved? The precision step's guard.
- :func:`softmax`: probabilities, for the Predictor and parity's probability differences.

Parity's verdict against a per-precision tolerance builds on these in
:mod:`dacovid_export.parity.compare`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dacovid_export.core.errors import CheckFailedError

__all__ = ["softmax", "NumericComparison", "compare_numeric", "check_numeric", "Agreement", "measure_agreement"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (``N x K`` -> ``N x K``), stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class NumericComparison:
    """Candidate logits against reference logits at one batch size; true when within tolerance."""

    batch: int
    max_abs_error: float
    scale: float  # max |reference logit|: the logits' magnitude the error is measured against
    relative_error: float  # max_abs_error / scale
    tolerance: float  # allowed max_abs_error = atol + rtol * scale
    top1_agreement: float  # fraction of samples whose arg-max agrees
    top1_disagreements: int  # disagreements on samples whose top-2 margin exceeds twice the tolerance
    passed: bool
    # False: reported, not a gate (INT8, where the accuracy guard's agreement decides); non-finite logits still fail
    enforced: bool = True

    def __bool__(self) -> bool:
        return self.passed or (not self.enforced and math.isfinite(self.max_abs_error))

    def describe(self) -> str:
        verdict = "ok" if self.passed else "beyond tolerance, reported only" if self else "FAILED"
        return (
            f"batch {self.batch}: max |diff| {self.max_abs_error:.3g} on logits of scale {self.scale:.3g} "
            f"(relative {self.relative_error:.2e}, allowed {self.tolerance:.3g}), "
            f"top-1 agreement {self.top1_agreement * 100:.0f}% [{verdict}]"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_numeric(reference: np.ndarray, candidate: np.ndarray, *, atol: float, rtol: float) -> NumericComparison:
    """Max abs error against ``atol + rtol * max|reference|``, and top-1 agreement.

    A disagreement counts as a failure only where the reference's top-2 margin is
    larger than twice the allowed error: below that, a tie can flip either way.
    """
    if reference.shape != candidate.shape:
        raise CheckFailedError(f"logits of shape {candidate.shape}, expected {reference.shape}")
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    if not np.all(np.isfinite(cand)):
        return NumericComparison(len(ref), float("inf"), float(np.abs(ref).max()), float("inf"), 0.0, 0.0, len(ref), False)
    diff = float(np.abs(ref - cand).max())
    scale = float(np.abs(ref).max())
    tolerance = atol + rtol * scale
    agree = ref.argmax(axis=1) == cand.argmax(axis=1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    disagreements = int(np.sum(~agree & decisive))
    return NumericComparison(
        batch=len(ref),
        max_abs_error=diff,
        scale=scale,
        relative_error=diff / max(scale, 1e-12),
        tolerance=tolerance,
        top1_agreement=float(agree.mean()),
        top1_disagreements=disagreements,
        passed=diff <= tolerance and disagreements == 0,
    )


def check_numeric(comparisons: Iterable[NumericComparison], what: str) -> None:
    """Raise :class:`CheckFailedError` listing every failed comparison."""
    failed = [c for c in comparisons if not c]
    if failed:
        raise CheckFailedError(
            f"{what}: outputs differ beyond tolerance: " + "; ".join(c.describe() for c in failed)
            + ". Loosen --atol/--rtol only if the difference is understood"
        )


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Top-1 agreement and logit error of a candidate against FP32 reference logits."""

    images: int
    agreement: float
    median_abs_dlogit: float
    max_abs_dlogit: float
    mean_abs_dlogit: float

    def describe(self) -> str:
        return (
            f"agreement {self.agreement:.2%} on {self.images} images, |Δlogit| median {self.median_abs_dlogit:.3g} "
            f"max {self.max_abs_dlogit:.3g}"
        )

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Agreement":
        """The agreement :meth:`to_dict` wrote (extra keys, e.g. a guard step's label, are ignored)."""
        return cls(
            images=int(data["images"]),
            agreement=float(data["agreement"]),
            median_abs_dlogit=float(data["median_abs_dlogit"]),
            max_abs_dlogit=float(data["max_abs_dlogit"]),
            mean_abs_dlogit=float(data["mean_abs_dlogit"]),
        )

    def key(self) -> tuple[float, float]:
        """Sort key, larger is better: agreement first, then a smaller mean logit error."""
        return (self.agreement, -self.mean_abs_dlogit)


def measure_agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """Compare N x K logits: share of equal arg-max, and |Δlogit| over all entries."""
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    return Agreement(
        images=int(len(reference)),
        agreement=float(np.mean(candidate.argmax(axis=1) == reference.argmax(axis=1))) if len(reference) else 0.0,
        median_abs_dlogit=float(np.median(diff)) if diff.size else 0.0,
        max_abs_dlogit=float(diff.max()) if diff.size else 0.0,
        mean_abs_dlogit=float(diff.mean()) if diff.size else 0.0,
    )

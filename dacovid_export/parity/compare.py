"""The judgement of one model against the reference: its metadata, then its logits against the tolerance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.agreement import softmax
from dacovid_export.data.metrics import classification_report
from dacovid_export.parity.config import Tolerance
from dacovid_export.parity.report import CheckResult

__all__ = ["check_metadata", "judge_logits"]


def check_metadata(model: ArtifactInfo, reference: ArtifactInfo) -> list[str]:
    """Raise for metadata that makes comparison meaningless; return provenance mismatches."""
    problems = []
    if tuple(model.class_names) != tuple(reference.class_names):
        problems.append(f"class names {list(model.class_names)} != checkpoint's {list(reference.class_names)}")
    mine, theirs = model.preprocessing.to_dict(), reference.preprocessing.to_dict()
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        same = np.allclose(a, b, rtol=0, atol=1e-7) if key in ("mean", "std") and a is not None and b is not None else a == b
        if not same:
            problems.append(f"preprocessing {key} {a!r} != checkpoint's {b!r}")
    if problems:
        raise UserInputError(
            f"{model.path} does not describe the same model as {reference.path}: " + "; ".join(problems)
            + ". Was it exported from another checkpoint? Re-export it from this one"
        )
    if model.source_sha256 != reference.source_sha256:
        short = (model.source_sha256 or "none")[:12]
        return [f"source_sha256 {short}... is not the checkpoint's {reference.source_sha256[:12]}... (exported from another checkpoint file)"]
    return []


def judge_logits(
    reference: np.ndarray,
    logits: np.ndarray,
    tolerance: Tolerance,
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> tuple[dict[str, Any], tuple[CheckResult, ...]]:
    """Parity's verdict on one model: its numbers and checks against ``tolerance``, ``N x K`` logits vs the reference's.

    Not :func:`dacovid_export.data.agreement.compare_numeric` (an atol/rtol test of the
    same computation): this judges a deployed model by answers, relative logit error,
    probabilities and accuracy, with the tolerance of its precision.
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(logits, dtype=np.float64)
    if ref.shape != out.shape:
        raise UserInputError(f"logits of shape {out.shape} cannot be compared with the reference's {ref.shape}")
    diff = np.abs(out - ref)
    prob_diff = np.abs(softmax(out) - softmax(ref))
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_diff = float(diff.max()) if diff.size else 0.0
    rel = max_diff / scale if scale > 0 else (0.0 if max_diff == 0 else math.inf)
    ref_top1, top1 = ref.argmax(axis=1), out.argmax(axis=1)
    agreement = float((ref_top1 == top1).mean()) if len(ref) else 1.0
    numbers: dict[str, Any] = {
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "max_rel_logit_diff": rel,
        "max_abs_prob_diff": float(prob_diff.max()) if prob_diff.size else 0.0,
        "mean_abs_prob_diff": float(prob_diff.mean()) if prob_diff.size else 0.0,
        "top1_agreement": agreement,
        "disagreements": int((ref_top1 != top1).sum()),
        "logit_scale": scale,
        "classification": None,
        "reference_classification": None,
        "accuracy_drop": None,
    }
    checks = [
        CheckResult("top-1 agreement", agreement >= tolerance.min_agreement - 1e-12, agreement, tolerance.min_agreement, ">=",
                    f"{numbers['disagreements']} of {len(ref)} differ")
    ]
    if tolerance.max_logit_rel is not None:
        checks.append(
            CheckResult("max |logit diff| / logit scale", rel <= tolerance.max_logit_rel + 1e-12, rel, tolerance.max_logit_rel, "<=",
                        f"max |diff| {max_diff:.3g} on scale {scale:.3g}")
        )
    if tolerance.max_prob_diff is not None:
        value = numbers["max_abs_prob_diff"]
        checks.append(CheckResult("max |prob diff|", value <= tolerance.max_prob_diff, value, tolerance.max_prob_diff, "<="))
    if labels is not None:
        ref_report = classification_report(labels, ref_top1, class_names)
        report = classification_report(labels, top1, class_names)
        drop = ref_report.accuracy - report.accuracy
        numbers.update(classification=report, reference_classification=ref_report, accuracy_drop=drop)
        if tolerance.max_accuracy_drop is not None:
            checks.append(
                CheckResult("accuracy drop", drop <= tolerance.max_accuracy_drop + 1e-12, drop, tolerance.max_accuracy_drop, "<=",
                            f"{report.accuracy * 100:.2f}% vs reference {ref_report.accuracy * 100:.2f}%")
            )
    return numbers, tuple(checks)

"""The result of a parity check: per-model numbers, checks and verdicts; a table for people, JSON for files.

Built by :func:`dacovid_export.parity.run.run_parity`. ``bool(report)`` is the
overall verdict (every model passed), in the manner of Polygraphy's comparison
results.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.core.fileio import atomic_write_json
from dacovid_export.data.metrics import ClassificationReport, plot_confusion_matrix

__all__ = ["CheckResult", "ModelParity", "ReferenceResult", "ParityReport"]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One criterion of a verdict: ``value`` against ``limit`` (``op`` is ``">="`` or ``"<="``)."""

    name: str
    passed: bool
    value: float | str | None
    limit: float | str | None
    op: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.name} {_fmt(self.value)} {self.op} {_fmt(self.limit)}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": _json_number(self.value),
            "limit": _json_number(self.limit),
            "op": self.op,
            "detail": self.detail,
        }


@dataclasses.dataclass(frozen=True)
class ReferenceResult:
    """The PyTorch checkpoint every model is compared with."""

    path: str
    sha256: str
    backend: str
    logit_scale: float  # max |logit| over all inputs; the unit of relative logit errors
    classification: ClassificationReport | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "backend": self.backend,
            "logit_scale": _json_number(self.logit_scale),
            "classification": None if self.classification is None else self.classification.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class SubsetRow:
    """A model on the images its verdict does not stand on (they trained the checkpoint, or chose the model): reported, not judged."""

    name: str  # "trained the checkpoint" / "chose the model (its guard's validation images)"
    count: int
    top1_agreement: float
    disagreements: int
    max_abs_logit_diff: float
    max_abs_prob_diff: float

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_number(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class ModelParity:
    """One model against the reference. ``error`` set means it could not be compared (e.g. NaN logits)."""

    path: str
    kind: str
    precision: str
    backend: str
    sha256: str  # of the model file itself: which bytes were checked
    source_sha256: str
    count: int
    max_abs_logit_diff: float | None
    mean_abs_logit_diff: float | None
    max_rel_logit_diff: float | None  # max |logit diff| / reference logit scale
    max_abs_prob_diff: float | None
    mean_abs_prob_diff: float | None
    top1_agreement: float | None
    disagreements: int | None
    classification: ClassificationReport | None
    accuracy_drop: float | None  # reference accuracy - model accuracy (fraction), labelled inputs only
    checks: tuple[CheckResult, ...]
    warnings: tuple[str, ...] = ()
    error: str | None = None
    # on what the verdict stands: counts, whose record told training images apart, the verdict images' sha256
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    other_rows: tuple[SubsetRow, ...] = ()  # the images set aside, in their own rows

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        reasons = [self.error] if self.error else []
        return reasons + [c.describe() for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "precision": self.precision,
            "backend": self.backend,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "passed": self.passed,
            "count": self.count,
            "max_abs_logit_diff": _json_number(self.max_abs_logit_diff),
            "mean_abs_logit_diff": _json_number(self.mean_abs_logit_diff),
            "max_rel_logit_diff": _json_number(self.max_rel_logit_diff),
            "max_abs_prob_diff": _json_number(self.max_abs_prob_diff),
            "mean_abs_prob_diff": _json_number(self.mean_abs_prob_diff),
            "top1_agreement": _json_number(self.top1_agreement),
            "disagreements": self.disagreements,
            "accuracy_drop": _json_number(self.accuracy_drop),
            "classification": None if self.classification is None else self.classification.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.warnings),
            "error": self.error,
            "evidence": dict(self.evidence),
            "set_aside": [r.to_dict() for r in self.other_rows],
        }


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """Everything ``dacovid-export check`` found; truthy when every model passed."""

    reference: ReferenceResult
    models: tuple[ModelParity, ...]
    inputs: Mapping[str, Any]  # {"mode": "images"|"synthetic", "count": n, ...}
    config: Mapping[str, Any]  # ParityConfig.to_dict()
    class_names: tuple[str, ...]
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    created: str = ""  # ISO 8601 UTC time of the check
    # engines that cannot run on this machine (runtime not installed, no GPU): (path, reason); not in the verdict
    skipped: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.models) and all(m.passed for m in self.models)

    @property
    def passed(self) -> bool:
        return bool(self)

    @property
    def failed_models(self) -> list[ModelParity]:
        return [m for m in self.models if not m.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "dacovid-parity",
            "format_version": 1,
            "passed": self.passed,
            "created": self.created,
            "class_names": list(self.class_names),
            "inputs": dict(self.inputs),
            "tolerances": dict(self.config),
            "reference": self.reference.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
            "versions": dict(self.versions),
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """The :meth:`to_dict` data, written atomically; never over the checkpoint or a model it judged."""

        check_outputs(inputs=[self.reference.path, *(m.path for m in self.models)], files={"json": path})
        atomic_write_json(path, self.to_dict())
        return Path(path)

    def write_confusion_pngs(self, folder: str | os.PathLike[str]) -> list[Path]:
        """One confusion-matrix PNG for the reference and for each model (labelled inputs only)."""
        folder = Path(folder)
        written: list[Path] = []
        entries: list[tuple[str, str, ClassificationReport | None]] = [
            ("reference", f"reference {Path(self.reference.path).name}", self.reference.classification)
        ]
        for i, m in enumerate(self.models):
            entries.append((f"{i + 1:02d}_{_safe_stem(m.path)}", f"{_label(m.path)} ({m.precision})", m.classification))
        for stem, title, report in entries:
            if report is None:
                continue
            written.append(
                plot_confusion_matrix(report, folder / f"{stem}_confusion.png", title=f"{title}: accuracy {report.accuracy * 100:.2f}%")
            )
        return written

    def format_table(self) -> str:
        inputs = self.inputs
        if inputs.get("mode") == "images":
            source = f"{inputs.get('count')} labelled images from {inputs.get('root')}"
        else:
            source = f"{inputs.get('count')} synthetic inputs (seed {inputs.get('seed')}; no labels, no accuracy)"
        lines = [
            f"reference: {self.reference.path} ({self.reference.backend.split(' ')[0]}, strict FP32), "
            f"logit scale {_fmt(self.reference.logit_scale)}",
            f"inputs:    {source}",
        ]
        if "evidence" in inputs:
            lines.append(f"evidence:  {inputs['evidence']}")
        lines.append("")
        header = ["model", "precision", "backend", "top-1 agree", "max|dlogit|", "rel", "mean|dlogit|", "max|dprob|", "accuracy", "verdict"]
        rows: list[list[str]] = []
        if self.reference.classification is not None:
            acc = f"{self.reference.classification.accuracy * 100:.2f}%"
            rows.append([Path(self.reference.path).name, "fp32", "torch", "reference", "", "", "", "", acc, ""])
        for m in self.models:
            acc = "" if m.classification is None else f"{m.classification.accuracy * 100:.2f}%"
            agree = "" if m.top1_agreement is None else f"{m.top1_agreement * 100:.2f}%"
            rows.append(
                [
                    _label(m.path),
                    m.precision,
                    m.backend.split(" ")[0],
                    agree,
                    _fmt(m.max_abs_logit_diff),
                    _fmt(m.max_rel_logit_diff),
                    _fmt(m.mean_abs_logit_diff),
                    _fmt(m.max_abs_prob_diff),
                    acc,
                    "PASS" if m.passed else "FAIL",
                ]
            )
            for sub in m.other_rows:
                rows.append(
                    [f"  {sub.count} {sub.name}", "", "", f"{sub.top1_agreement * 100:.2f}%", _fmt(sub.max_abs_logit_diff),
                     "", "", _fmt(sub.max_abs_prob_diff), "", "not judged"]
                )
        lines.extend(_table(header, rows))
        for m in self.models:
            if m.evidence:
                e = m.evidence
                lines.append(
                    f"evidence: {_label(m.path)}: verdict on {e['verdict_images']} image(s) that neither trained the "
                    f"checkpoint ({e['trained_checkpoint']} did) nor chose the model ({e['chose_model']} did: its "
                    "guard's validation images); those are in the rows below it, not judged"
                )
            for w in m.warnings:
                lines.append(f"warning: {_label(m.path)}: {w}")
            for reason in m.failures:
                lines.append(f"FAIL {_label(m.path)}: {reason}")
        if self.reference.classification is not None:
            lines += ["", f"reference {Path(self.reference.path).name}:", self.reference.classification.format_table()]
            for m in self.models:
                if m.classification is not None:
                    lines += ["", f"{_label(m.path)} ({m.precision}):", m.classification.format_table()]
        for path, reason in self.skipped:
            lines.append(f"SKIPPED {_label(path)}: {reason}")
        passed = sum(m.passed for m in self.models)
        skipped = f" ({len(self.skipped)} skipped, not judged)" if self.skipped else ""
        lines += ["", f"parity: {passed}/{len(self.models)} model(s) passed{skipped} -> {'PASS' if self else 'FAIL'}"]
        return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 3) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    def fmt(cells: Sequence[str]) -> str:
        # names left, numbers right
        return "  ".join(c.ljust(w) if i < text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _fmt(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _json_number(value: float | str | None) -> float | str | None:
    """JSON has no NaN/inf: write them as strings rather than emitting invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _safe_stem(path: str) -> str:
    name = Path(path).name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _label(path: str) -> str:
    """A model's name in tables: the file name, or a served endpoint's whole URL (its host and port matter)."""
    return path if "://" in path else Path(path).name

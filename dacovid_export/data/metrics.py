"""Classification metrics in the paper's Table 3 layout, and the confusion-matrix picture."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.core.fileio import atomic_path

__all__ = ["ClassificationReport", "classification_report", "plot_confusion_matrix"]


@dataclasses.dataclass(frozen=True)
class ClassificationReport:
    class_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # [true][predicted]
    accuracy: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                name: {"precision": p, "recall": r, "f1": f, "support": s}
                for name, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1, self.support)
            },
            "confusion_matrix": [list(row) for row in self.confusion],
            "class_names": list(self.class_names),
        }

    def format_table(self) -> str:
        width = max(10, *(len(n) for n in self.class_names))
        lines = [f"{'class':<{width}}  precision  recall     f1  support"]
        for name, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{name:<{width}}  {p * 100:9.2f}  {r * 100:6.2f}  {f * 100:5.2f}  {s:7d}")
        lines.append(f"{'accuracy':<{width}}  {self.accuracy * 100:.2f}%  (n={sum(self.support)})")
        return "\n".join(lines)


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> ClassificationReport:
    """Per-class precision/recall/F1 and the confusion matrix; 0/0 counts as 0, never NaN."""
    k = len(class_names)
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels, y_pred {p.size}")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    accuracy = float(tp.sum() / cm.sum()) if cm.sum() else 0.0
    return ClassificationReport(
        class_names=tuple(class_names),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        accuracy=accuracy,
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in actual),
    )


def plot_confusion_matrix(report: ClassificationReport, path: str | os.PathLike[str], title: str = "") -> Path:
    """Write a PNG of the confusion matrix (counts, with row-normalised shading) atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report.confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    shade = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(report.class_names)
    fig, ax = plt.subplots(figsize=(1.6 * k + 2, 1.4 * k + 1.5))
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), report.class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), report.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {report.accuracy * 100:.1f}%")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path

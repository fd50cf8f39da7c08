"""What an export or precision step wrote and how it checked it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dacovid_export.artifacts.onnx_graph import AttentionChain
from dacovid_export.artifacts.onnx_metadata import (
    info_from_model,
    load_onnx,
    metadata_of,
)
from dacovid_export.core.fileio import sha256_file
from dacovid_export.data.agreement import NumericComparison

__all__ = ["OnnxExportResult", "written_result"]


@dataclasses.dataclass(frozen=True)
class OnnxExportResult:
    """What an export or precision conversion wrote and how it checked it."""

    path: Path
    precision: str
    opset: int
    batch: int | None  # fixed batch size; None = dynamic
    size_bytes: int
    sha256: str
    source_sha256: str  # the checkpoint's
    histogram: Mapping[str, int]
    checks: tuple[str, ...]
    attention: tuple[AttentionChain, ...]
    # label ("onnxruntime fp32 vs pytorch", ...) -> one comparison per batch size
    verification: Mapping[str, tuple[NumericComparison, ...]]
    fp32_nodes: tuple[str, ...]  # nodes the precision step left in FP32 (empty for FP32 exports)
    timings: Mapping[str, float]  # step -> wall seconds
    precision_details: Mapping[str, Any]
    metadata: Mapping[str, str]
    notes: tuple[str, ...] = ()  # report lines of the step that wrote it (the accuracy guard's verdict)
    # the accuracy guard's report (a calibration report: lines(), to_dict(), METADATA_KEY); None when none judged
    guard: Any = None

    def summary_lines(self) -> list[str]:
        """Human-readable report: what was written, checks, numerics, FP32 nodes, timings."""
        batch = "dynamic batch" if self.batch is None else f"static batch {self.batch}"
        lines = [
            f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB, {self.precision}, opset {self.opset}, {batch})",
            f"sha256 {self.sha256}",
            "operators: " + ", ".join(f"{op} {n}" for op, n in self.histogram.items()),
        ]
        lines += [f"check passed: {c}" for c in self.checks]
        for label, comparisons in self.verification.items():
            lines += [f"{label}: {c.describe()}" for c in comparisons]
        lines += self.notes
        if self.precision != "fp32":
            shown = ", ".join(self.fp32_nodes[:20]) + (f", ... ({len(self.fp32_nodes)} in all)" if len(self.fp32_nodes) > 20 else "")
            lines.append(f"nodes kept in FP32 ({len(self.fp32_nodes)}): {shown or 'none'}")
        lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "precision": self.precision,
            "opset": self.opset,
            "batch": self.batch,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "histogram": dict(self.histogram),
            "checks": list(self.checks),
            "attention": [dataclasses.asdict(b) for b in self.attention],
            "verification": {k: [c.to_dict() for c in v] for k, v in self.verification.items()},
            "fp32_nodes": list(self.fp32_nodes),
            "timings": dict(self.timings),
            "precision_details": _jsonable(self.precision_details),
            **({self.guard.METADATA_KEY: self.guard.to_dict()} if self.guard is not None else {}),
            "metadata": dict(self.metadata),
        }


def written_result(
    path: Path,
    batch: int | None,
    report: Any,
    verification: Mapping[str, tuple[NumericComparison, ...]],
    fp32_nodes: tuple[str, ...],
    timings: Mapping[str, float],
    details: Mapping[str, Any],
    notes: tuple[str, ...] = (),
    guard: Any = None,
) -> OnnxExportResult:
    """The result record of a checked model just written at ``path``."""
    proto = load_onnx(path)
    info = info_from_model(proto, path)
    return OnnxExportResult(
        path=path,
        precision=info.precision,
        opset=int(info.extra.get("opset") or 0),
        batch=batch,
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        source_sha256=info.source_sha256,
        histogram=dict(report.histogram),
        checks=tuple(report.checks),
        attention=tuple(report.attention),
        verification=dict(verification),
        fp32_nodes=tuple(fp32_nodes),
        timings={**timings, "total": sum(timings.values())},
        precision_details=dict(details),
        metadata=metadata_of(proto),
        notes=notes,
        guard=guard,
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

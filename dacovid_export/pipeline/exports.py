"""The pipeline's ONNX steps: the FP32 export, then the FP16 and INT8 conversions, each described for the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.calibration.convert import convert_precision
from dacovid_export.core.errors import CheckFailedError
from dacovid_export.core.progress import StepTimer
from dacovid_export.export.config import OnnxExportConfig
from dacovid_export.export.onnx_export import export_onnx
from dacovid_export.pipeline.config import PipelineConfig
from dacovid_export.pipeline.inputs import PipelineInputs
from dacovid_export.pipeline.outcomes import FailedStep, SkippedStep

if TYPE_CHECKING:
    from dacovid_export.export.result import OnnxExportResult

__all__ = ["OnnxRecord", "OnnxModels", "make_onnx_models"]


@dataclasses.dataclass(frozen=True)
class OnnxRecord:
    """One ONNX model the pipeline made: file, checks, numerics and the FP32 nodes the precision step kept."""

    path: str
    precision: str
    size_bytes: int
    sha256: str
    step_seconds: Mapping[str, float]
    fp32_nodes: tuple[str, ...]
    operators: Mapping[str, int]
    checks: tuple[str, ...]
    verification: Mapping[str, tuple[Mapping[str, Any], ...]]
    int8_guard: Mapping[str, Any] | None = None  # the INT8 accuracy guard's verdict, when it ran
    fp16_guard: Mapping[str, Any] | None = None  # the FP16 accuracy guard's verdict, when it ran

    @classmethod
    def of(cls, result: "OnnxExportResult") -> "OnnxRecord":
        return cls(
            path=str(result.path),
            precision=result.precision,
            size_bytes=result.size_bytes,
            sha256=result.sha256,
            step_seconds=dict(result.timings),
            fp32_nodes=tuple(result.fp32_nodes),
            operators=dict(result.histogram),
            checks=tuple(result.checks),
            verification={k: tuple(c.to_dict() for c in v) for k, v in result.verification.items()},
            int8_guard=result.precision_details.get("guard"),
            fp16_guard=result.precision_details.get("fp16_guard"),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "step_seconds": dict(self.step_seconds),
            "fp32_nodes": list(self.fp32_nodes),
            "operators": dict(self.operators),
            "checks": list(self.checks),
            "verification": {k: list(v) for k, v in self.verification.items()},
        }
        if self.int8_guard is not None:
            out["int8_guard"] = self.int8_guard
        if self.fp16_guard is not None:
            out["fp16_guard"] = self.fp16_guard
        return out


@dataclasses.dataclass(frozen=True)
class OnnxModels:
    """The ONNX models made (precision -> path, FP32 first) and what each step left behind."""

    paths: Mapping[str, Path]
    records: Mapping[str, OnnxRecord]
    skipped: tuple[SkippedStep, ...]
    failed: tuple[FailedStep, ...]


def make_onnx_models(inputs: PipelineInputs, config: PipelineConfig, timer: StepTimer) -> OnnxModels:
    """FP32 export (must succeed), then FP16 and INT8 (may fail their checks: recorded, and the pipeline goes on)."""
    paths: dict[str, Path] = {}
    records: dict[str, OnnxRecord] = {}
    skipped: list[SkippedStep] = []
    failed: list[FailedStep] = []
    with timer.step("ONNX FP32 export"):
        result = export_onnx(inputs.checkpoint, config.out / "model.onnx", OnnxExportConfig(), progress=config.progress)
    paths["fp32"] = result.path
    records["fp32"] = OnnxRecord.of(result)
    for precision in ("fp16", "int8"):
        name = f"ONNX {precision.upper()} conversion"
        with timer.step(name):
            if precision == "int8" and inputs.calib_data is None:
                skipped.append(
                    SkippedStep(
                        name,
                        "no calibration images: give --calib-data DIR (training images, not the parity set) "
                        "to make the INT8 model",
                    )
                )
                continue
            try:
                result = convert_precision(
                    paths["fp32"],
                    config.out / f"model.{precision}.onnx",
                    precision=precision,  # type: ignore[arg-type]
                    calib_data=inputs.calib_data,
                    calib_size=inputs.calib_size,
                    seed=config.seed,
                    progress=config.progress,
                )
            except CheckFailedError as exc:
                failed.append(FailedStep.of(name, exc))
                timer.note(f"failed: {exc}")
                continue
        paths[precision] = result.path
        records[precision] = OnnxRecord.of(result)
    return OnnxModels(paths, records, tuple(skipped), tuple(failed))

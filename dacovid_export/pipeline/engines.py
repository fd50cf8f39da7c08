"""The pipeline's engine step: an engine per ONNX model where TensorRT (or TensorRT-RTX) can build one."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.backends.registry import unavailable_reason
from dacovid_export.core.errors import (
    CheckFailedError,
    EngineBuildError,
    MissingDependencyError,
)
from dacovid_export.core.progress import StepTimer
from dacovid_export.engine.build import build_engine
from dacovid_export.engine.config import EngineBuildConfig
from dacovid_export.pipeline.config import PARITY_BATCH, PipelineConfig
from dacovid_export.pipeline.outcomes import FailedStep, SkippedStep
from dacovid_export.trt.library import gpu_info, resolve_runtime

if TYPE_CHECKING:
    from dacovid_export.engine.config import EngineBuildConfig, EngineBuildResult

__all__ = ["EngineRecord", "EngineBuilds", "RunnableEngines", "build_engines", "runnable_engines"]


@dataclasses.dataclass(frozen=True)
class EngineRecord:
    """One engine the pipeline built: runtime, targets, size, build time and where each layer runs in what precision."""

    path: str
    runtime: str
    compute_capabilities: tuple[str, ...]
    size_bytes: int
    seconds: float
    phase_seconds: Mapping[str, float]
    build: Mapping[str, Any]
    trtexec_equivalent: tuple[str, ...]
    precision_counts: Mapping[str, Any]
    precision_table: tuple[str, ...]
    loaded_here: str

    @classmethod
    def of(cls, result: "EngineBuildResult", build: "EngineBuildConfig", seconds: float) -> "EngineRecord":
        return cls(
            path=str(result.engine_path),
            runtime=result.metadata.runtime_label,
            compute_capabilities=tuple(result.metadata.compute_capabilities),
            size_bytes=result.metadata.engine_bytes,
            seconds=round(seconds, 2),
            phase_seconds=dict(result.phase_seconds),
            build=build.to_dict(),
            trtexec_equivalent=tuple(result.trtexec),
            precision_counts=result.layer_precisions.counts(),
            precision_table=tuple(result.layer_precisions.table_lines()),
            loaded_here=result.verified,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("compute_capabilities", "trtexec_equivalent", "precision_table"):
            out[name] = list(out[name])
        return out


@dataclasses.dataclass(frozen=True)
class EngineBuilds:
    """The engines built (precision -> path) and their records, and the steps skipped or failed."""

    paths: Mapping[str, Path]
    records: Mapping[str, EngineRecord]
    skipped: tuple[SkippedStep, ...] = ()
    failed: tuple[FailedStep, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunnableEngines:
    """The engines this machine can run, and a skipped step (with the reason) for each of the others."""

    paths: tuple[Path, ...]
    skipped: tuple[SkippedStep, ...]


def build_engines(onnx_models: Mapping[str, Path], config: PipelineConfig, timer: StepTimer) -> EngineBuilds:
    """Build an engine per ONNX model with the runtime ``auto`` picks.

    TensorRT needs a GPU to build; TensorRT-RTX builds without one, so its
    engines are built and described (size, build time, precision table) even
    where they cannot run; parity and latency then skip them with the reason.
    """
    try:
        runtime, why = resolve_runtime("auto")
        if runtime == "tensorrt":
            gpu_info("cuda" if config.device in ("auto", "cpu") else config.device)
    except MissingDependencyError as exc:
        timer.note(f"skipped: {exc}")
        return EngineBuilds({}, {}, (SkippedStep("TensorRT engines", str(exc)),))
    if config.device == "cpu" and runtime == "tensorrt":
        return EngineBuilds(
            {}, {}, (SkippedStep("TensorRT engines", "--device cpu was asked for; TensorRT engines run on a GPU"),)
        )
    timer.note(f"runtime {runtime} ({why})")

    largest = max(config.batch_sizes)
    paths: dict[str, Path] = {}
    records: dict[str, EngineRecord] = {}
    failed: list[FailedStep] = []
    for precision, onnx_path in onnx_models.items():
        if precision == "bf16":
            continue  # a BF16-marked model runs on the CPU through OpenVINO; engines come from the FP32/FP16/INT8 ONNX
        build = EngineBuildConfig(
            precision=precision, max_batch=max(largest, PARITY_BATCH), opt_batch=largest, runtime=runtime
        )
        try:
            t0 = time.perf_counter()
            result = build_engine(onnx_path, config.out / f"model.{precision}.engine", build, progress=config.progress)
            records[precision] = EngineRecord.of(result, build, time.perf_counter() - t0)
            paths[precision] = result.engine_path
        except (EngineBuildError, CheckFailedError) as exc:
            # TensorRT rejected this model: keep going with the others, the report says why
            failed.append(FailedStep.of(f"TensorRT {precision} engine", exc))
    return EngineBuilds(paths, records, (), tuple(failed))


def runnable_engines(engines: Mapping[str, Path], config: PipelineConfig) -> RunnableEngines:
    """The engines this machine can run; the others are reported as skipped for parity and latency."""
    runnable: list[Path] = []
    skipped: list[SkippedStep] = []
    for precision, path in engines.items():
        reason = unavailable_reason(path)
        if reason is None and config.device == "cpu":
            reason = "--device cpu was asked for; engines run on a GPU"
        if reason is None:
            runnable.append(path)
        else:
            skipped.append(SkippedStep(f"parity and latency of the {precision} engine", reason))
    return RunnableEngines(tuple(runnable), tuple(skipped))

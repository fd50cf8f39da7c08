"""The pipeline's engine step: an engine per ONNX model where TensorRT (or TensorRT-RTX) can build one."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dacovid_export.backends.registry import unavailable_reason
from dacovid_export.calibration.precisions import precision_of
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
from dacovid_export.trt.library import gpu_info, import_runtime, resolve_runtime

if TYPE_CHECKING:
    from dacovid_export.engine.config import EngineBuildConfig, EngineBuildResult

__all__ = ["EngineRecord", "EngineBuilds", "RunnableEngines", "build_engines", "runnable_engines"]


@dataclasses.dataclass(frozen=True)
class EngineRecord:
    """One engine the pipeline built: the build's own result, the options it was built with and the wall time,
    shown in report.json through the result's ``to_dict``."""

    result: "EngineBuildResult"
    build: "EngineBuildConfig"
    seconds: float

    # what report.json keeps of EngineBuildResult.to_dict (paths of the sources and the cache stay in the sidecar)
    REPORT_KEYS: ClassVar[tuple[str, ...]] = (
        "path", "runtime", "compute_capabilities", "size_bytes", "phase_seconds", "trtexec_equivalent",
        "precision_counts", "precision_table", "loaded_here",
    )

    @classmethod
    def of(cls, result: "EngineBuildResult", build: "EngineBuildConfig", seconds: float) -> "EngineRecord":
        return cls(result, build, round(seconds, 2))

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict()
        return {**{k: out[k] for k in self.REPORT_KEYS}, "seconds": self.seconds, "build": self.build.to_dict()}


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
        # installed is not importable: the library may not load on this platform; said now, in one line
        import_runtime(runtime)
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
        if not precision_of(precision).engine:
            continue  # e.g. a BF16-marked model: it runs on the CPU through OpenVINO; engines come from the others
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

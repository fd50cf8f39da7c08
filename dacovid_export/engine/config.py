"""How to build an engine (validated up front), what a build returns, and where its files go."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.info import ENGINE_SUFFIXES
from dacovid_export.calibration.precisions import (
    engine_precisions,
    precision_names,
    precision_of,
)
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_batch_size
from dacovid_export.core.validate import check_bool, check_int, is_number
from dacovid_export.trt.library import RUNTIME_CHOICES
from dacovid_export.trt.targets import RTX_TARGETS

if TYPE_CHECKING:
    from dacovid_export.artifacts.engine_metadata import EngineMetadata
    from dacovid_export.calibration.precisions import PrecisionKind
    from dacovid_export.trt.network import LayerPrecisions

__all__ = [
    "ENGINE_SUFFIXES",
    "EngineBuildConfig",
    "EngineBuildResult",
    "ProfileShapes",
    "check_engine_paths",
    "refuse_engineless_source",
    "precision_onnx_path",
]

# the optimization profile's min, opt and max input shapes, each N x C x H x W
ProfileShapes = tuple[tuple[int, int, int, int], tuple[int, int, int, int], tuple[int, int, int, int]]


def _known_kind(precision: object) -> "PrecisionKind | None":
    return precision_of(precision) if isinstance(precision, str) and precision in precision_names() else None


def refuse_engineless_source(precision: str, onnx_path: str | os.PathLike[str]) -> None:
    """A model of a precision with no engines (a BF16-marked one) is no engine source: said in one line before any
    work."""
    kind = precision_of(precision)
    if not kind.engine:
        raise UserInputError(
            f"{os.fspath(onnx_path)!r} {kind.no_engine_reason or f'holds a {precision} model'}; engines are built "
            "from the FP32 ONNX model: give that one (dacovid-export onnx CHECKPOINT -o model.onnx)"
        )


@dataclasses.dataclass(frozen=True)
class EngineBuildConfig:
    """How to build: precision, batch profile, workspace, optimization level, cache, portability.

    ``opt_batch`` (the batch TensorRT tunes its kernels for) defaults to
    ``max_batch``: throughput first; give ``opt_batch=1`` for single-image latency.
    ``workspace_gib`` caps TensorRT's scratch memory (``MemoryPoolType.WORKSPACE``).
    ``opt_level`` is ``builder_optimization_level`` (0-5, TensorRT's default 3).
    ``hardware_compatible`` builds an ``ampere+`` engine that runs on any GPU of
    compute capability >= 8.0 (it must be built on one; may be slower).
    ``runtime`` is ``"auto"``, ``"tensorrt"`` or ``"tensorrt-rtx"``;
    ``target_cc`` (TensorRT-RTX only) the compute capabilities to compile for,
    e.g. ``("8.6", "8.9")``; empty: TensorRT-RTX's default set.
    """

    precision: str
    min_batch: int = 1
    opt_batch: int | None = None
    max_batch: int = 8
    workspace_gib: float = 4.0
    opt_level: int = 3
    timing_cache: Path | None = None
    hardware_compatible: bool = False
    runtime: str = "auto"
    target_cc: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in engine_precisions():
            raise UserInputError(
                f"precision={self.precision!r}: use one of {', '.join(engine_precisions())}"
                + (f" ({kind.no_engine_note})" if (kind := _known_kind(self.precision)) and kind.no_engine_note else "")
            )
        for name in ("min_batch", "max_batch"):
            check_batch_size(getattr(self, name), name)
        opt_batch = self.max_batch if self.opt_batch is None else self.opt_batch
        check_batch_size(opt_batch, "opt_batch")
        object.__setattr__(self, "opt_batch", opt_batch)
        if not (self.min_batch <= opt_batch <= self.max_batch):
            raise UserInputError(
                f"batch sizes min={self.min_batch} opt={self.opt_batch} max={self.max_batch}: need min <= opt <= max"
            )
        workspace = self.workspace_gib
        if not (is_number(workspace) and math.isfinite(workspace) and workspace > 0):
            raise UserInputError(f"workspace_gib={workspace!r}: give a positive number of GiB (e.g. 4)")
        if workspace * 2**30 < 2**20:
            raise UserInputError(f"workspace_gib={workspace!r}: less than 1 MiB of workspace cannot build this model")
        object.__setattr__(self, "workspace_gib", float(workspace))
        check_int("opt_level", self.opt_level, 0, 5, why=" (TensorRT builder optimization levels are 0..5; default 3)")
        if self.timing_cache is not None:
            cache = Path(self.timing_cache)
            if cache.exists() and not cache.is_file():
                raise UserInputError(f"timing cache {str(cache)!r} exists but is not a file")
            object.__setattr__(self, "timing_cache", cache)
        check_bool("hardware_compatible", self.hardware_compatible)
        if self.runtime not in RUNTIME_CHOICES:
            raise UserInputError(f"runtime={self.runtime!r}: use one of {', '.join(RUNTIME_CHOICES)}")
        if isinstance(self.target_cc, str) or not all(isinstance(t, str) for t in self.target_cc):
            raise UserInputError(f"target_cc={self.target_cc!r}: give a tuple of compute capabilities like ('8.6', '8.9')")
        targets = tuple(self.target_cc)
        unknown = [t for t in targets if t not in RTX_TARGETS]
        if unknown:
            raise UserInputError(
                f"--target-cc {','.join(targets)}: {', '.join(unknown)} is not a TensorRT-RTX target; choose from "
                f"{', '.join(RTX_TARGETS)} (no 9.0: Hopper GPUs such as the H100/H200 need --runtime tensorrt)"
            )
        if len(set(targets)) != len(targets):
            raise UserInputError(f"--target-cc {','.join(targets)}: a compute capability is listed twice")
        object.__setattr__(self, "target_cc", targets)
        if self.runtime != "auto":
            self.check_runtime(self.runtime)

    def check_runtime(self, runtime: str, why: str = "") -> None:
        """Refuse the options that ``runtime`` does not have (``why``: how that runtime was chosen)."""
        chosen = f" ({why})" if why else ""
        if runtime == "tensorrt" and self.target_cc:
            raise UserInputError(
                f"--target-cc applies to TensorRT-RTX, but the runtime is TensorRT{chosen}, which builds for the GPU "
                "it runs on: drop --target-cc, or give --runtime tensorrt-rtx"
            )
        if runtime == "tensorrt-rtx" and self.hardware_compatible:
            raise UserInputError(
                f"--hardware-compatible is a TensorRT option, but the runtime is TensorRT-RTX{chosen}: choose its "
                "target GPUs with --target-cc instead (e.g. --target-cc 8.6,8.9,12.0)"
            )
        if runtime == "tensorrt-rtx" and self.timing_cache is not None:
            raise UserInputError(
                f"--timing-cache does nothing with TensorRT-RTX{chosen} (it compiles kernels on the GPU at run time "
                "and keeps them in a runtime cache next to the engine): drop --timing-cache"
            )

    @property
    def batch_profile(self) -> tuple[int, int, int]:
        """``(min, opt, max)`` batch: ``opt_batch`` as resolved (typed ``int | None`` only for the caller's default)."""
        opt = self.max_batch if self.opt_batch is None else self.opt_batch
        return self.min_batch, opt, self.max_batch

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * 2**30)

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "min_batch": self.min_batch,
            "opt_batch": self.opt_batch,
            "max_batch": self.max_batch,
            "workspace_gib": self.workspace_gib,
            "opt_level": self.opt_level,
            "timing_cache": str(self.timing_cache) if self.timing_cache is not None else None,
            "hardware_compatible": self.hardware_compatible,
            "runtime": self.runtime,
            "target_cc": list(self.target_cc),
        }


@dataclasses.dataclass(frozen=True)
class EngineBuildResult:
    engine_path: Path
    metadata_path: Path
    onnx_path: Path  # the ONNX the engine was parsed from
    converted_onnx: Path | None  # written by the precision step, if it ran
    metadata: "EngineMetadata"
    phase_seconds: dict[str, float]
    timing_cache: Path | None
    trtexec: list[str]  # empty for TensorRT-RTX (its tool is tensorrt_rtx, not trtexec)
    layer_precisions: "LayerPrecisions"
    runtime_reason: str = ""  # how the runtime was chosen ("auto: ...")
    verified: str = ""  # "deserialized on <GPU>" or why the engine could not be loaded here

    @property
    def total_seconds(self) -> float:
        return sum(self.phase_seconds.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports: the engine, where it came from, its build phases and where each layer runs."""
        return {
            "path": str(self.engine_path),
            "metadata_path": str(self.metadata_path),
            "onnx_path": str(self.onnx_path),
            "converted_onnx": None if self.converted_onnx is None else str(self.converted_onnx),
            "runtime": self.metadata.runtime_label,
            "runtime_reason": self.runtime_reason,
            "compute_capabilities": list(self.metadata.compute_capabilities),
            "size_bytes": self.metadata.engine_bytes,
            "phase_seconds": dict(self.phase_seconds),
            "timing_cache": None if self.timing_cache is None else str(self.timing_cache),
            "trtexec_equivalent": list(self.trtexec),
            "precision_counts": self.layer_precisions.counts(),
            "precision_table": list(self.layer_precisions.table_lines()),
            "loaded_here": self.verified,
        }


def precision_onnx_path(engine_path: str | os.PathLike[str], precision: str) -> Path:
    """Where the precision step writes its ONNX: ``out.fp16.engine`` -> ``out.fp16.onnx``, ``out.engine`` -> ``out.fp16.onnx``."""
    engine_path = Path(engine_path)
    stem = engine_path.stem
    if not stem.endswith(f".{precision}"):
        stem = f"{stem}.{precision}"
    return engine_path.with_name(stem + ".onnx")


def check_engine_paths(onnx_path: Path, output: Path) -> None:
    """The ONNX input exists and the output is named like an engine."""
    if onnx_path.suffix.lower() != ".onnx":
        raise UserInputError(f"{str(onnx_path)!r} is not an ONNX model (.onnx): make one with 'dacovid-export onnx'")
    if not onnx_path.is_file():
        raise UserInputError(f"ONNX model {str(onnx_path)!r} does not exist or is not a file")
    if output.suffix.lower() not in ENGINE_SUFFIXES:
        raise UserInputError(
            f"output {str(output)!r}: an engine file must end in {', '.join(ENGINE_SUFFIXES)} (e.g. model.fp16.engine)"
        )
    if output.exists() and output.is_dir():
        raise UserInputError(f"output {str(output)!r} is a folder; give an engine file name")


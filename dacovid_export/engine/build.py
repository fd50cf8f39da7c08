"""Build a strongly typed TensorRT or TensorRT-RTX engine from a dacovid-export ONNX model.

Precision lives in the ONNX graph, not in builder flags: an FP16 engine is
built from the mixed-precision ONNX (AutoCast), an INT8 engine from the Q/DQ
ONNX; :func:`build_engine` builds the ONNX it is given (from an FP32 ONNX,
:mod:`dacovid_export.engine.make` runs the precision step first and writes its
ONNX beside the engine). The builder parses the ONNX into a strongly typed network and sets no precision flag, which is the only mode
TensorRT 11 has and the opt-in mode of TensorRT 10 (see
:mod:`dacovid_export.trt.library`).

The build: parse (errors name the failing node and operator) -> one
optimization profile over the batch range -> workspace limit, builder
optimization level, optional hardware compatibility (``ampere+``) and a
timing cache that later builds reuse -> ``build_serialized_network`` ->
deserialize once to check the engine's inputs and outputs -> write the engine
and its sidecar JSON atomically. Any failure leaves no new engine and no
sidecar behind and is reported as one line (exit code 2 in the CLI).

Two runtimes (:mod:`dacovid_export.trt.library`): ``tensorrt`` builds on the
GPU that will run the engine; ``tensorrt-rtx`` builds on any machine for a list
of target compute capabilities (``target_cc``) and compiles kernels on the RTX
GPU at run time, so without a GPU its engine is built and described but cannot
be deserialized here (the sidecar says so under ``build.verified``). Either way
the sidecar records the precision the real parser gave every ONNX node
(:mod:`dacovid_export.trt.network`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.engine_metadata import RTX_DEFAULT_TARGETS, RTX_TARGETS
from dacovid_export.artifacts.info import PRECISIONS
from dacovid_export.artifacts.onnx_graph import external_data_locations
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.core.errors import EngineBuildError, UserInputError
from dacovid_export.core.fileio import atomic_path, atomic_write_bytes, sha256_file
from dacovid_export.core.progress import StepTimer
from dacovid_export.trt.library import RUNTIME_CHOICES
from dacovid_export.trt.network import one_line

if TYPE_CHECKING:
    from types import ModuleType

    from dacovid_export.artifacts.engine_metadata import EngineMetadata
    from dacovid_export.artifacts.info import ArtifactInfo
    from dacovid_export.trt.library import GpuInfo, TrtLog
    from dacovid_export.trt.network import LayerPrecisions

__all__ = [
    "ENGINE_SUFFIXES",
    "EngineBuildError",
    "EngineBuildConfig",
    "EngineBuildResult",
    "build_engine",
    "check_engine_paths",
    "precision_onnx_path",
    "prepare_build",
    "trtexec_equivalent",
]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
_MAX_BATCH_LIMIT = 4096

Log = Callable[[str], None]


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
        if self.precision not in PRECISIONS:
            raise UserInputError(f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")
        for name in ("min_batch", "max_batch"):
            _check_batch(name, getattr(self, name))
        if self.opt_batch is None:
            object.__setattr__(self, "opt_batch", self.max_batch)
        _check_batch("opt_batch", self.opt_batch)
        if not (self.min_batch <= self.opt_batch <= self.max_batch):  # type: ignore[operator]
            raise UserInputError(
                f"batch sizes min={self.min_batch} opt={self.opt_batch} max={self.max_batch}: need min <= opt <= max"
            )
        workspace = self.workspace_gib
        if isinstance(workspace, bool) or not isinstance(workspace, (int, float)) or not math.isfinite(workspace) or workspace <= 0:
            raise UserInputError(f"workspace_gib={workspace!r}: give a positive number of GiB (e.g. 4)")
        if workspace * 2**30 < 2**20:
            raise UserInputError(f"workspace_gib={workspace!r}: less than 1 MiB of workspace cannot build this model")
        object.__setattr__(self, "workspace_gib", float(workspace))
        if isinstance(self.opt_level, bool) or not isinstance(self.opt_level, int) or not 0 <= self.opt_level <= 5:
            raise UserInputError(f"opt_level={self.opt_level!r}: TensorRT builder optimization levels are 0..5 (default 3)")
        if self.timing_cache is not None:
            cache = Path(self.timing_cache)
            if cache.exists() and not cache.is_file():
                raise UserInputError(f"timing cache {str(cache)!r} exists but is not a file")
            object.__setattr__(self, "timing_cache", cache)
        if not isinstance(self.hardware_compatible, bool):
            raise UserInputError(f"hardware_compatible={self.hardware_compatible!r}: must be True or False")
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


def _check_batch(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_BATCH_LIMIT:
        raise UserInputError(f"{name}={value!r}: must be an integer from 1 to {_MAX_BATCH_LIMIT}")


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


def precision_onnx_path(engine_path: str | os.PathLike[str], precision: str) -> Path:
    """Where the precision step writes its ONNX: ``out.fp16.engine`` -> ``out.fp16.onnx``, ``out.engine`` -> ``out.fp16.onnx``."""
    engine_path = Path(engine_path)
    stem = engine_path.stem
    if not stem.endswith(f".{precision}"):
        stem = f"{stem}.{precision}"
    return engine_path.with_name(stem + ".onnx")


# ----------------------------------------------------------------------------- checks before any work


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


# ----------------------------------------------------------------------------- the build


def build_engine(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EngineBuildConfig,
    *,
    device: str = "cuda",
    log: Log | None = None,
    progress: bool = True,
    converted_from: str | os.PathLike[str] | None = None,
    precision_seconds: float | None = None,
) -> EngineBuildResult:
    """Build ``output`` (and ``<output>.json``) from ``onnx_path``, an ONNX model of ``config.precision``.

    The engine's precision is the ONNX graph's (strongly typed): an FP32 ONNX
    builds an FP32 engine only. To build FP16/INT8 from an FP32 ONNX, run the
    precision step first (:func:`dacovid_export.engine.make.make_engine` does
    both). ``converted_from``/``precision_seconds``: the FP32 ONNX this one was
    made from and how long that took, recorded in the result and the sidecar.
    ``log`` receives one line per phase and TensorRT's warnings; ``progress``
    draws TensorRT's build phases as tqdm bars on stderr.

    Raises :class:`UserInputError` for bad paths or options,
    :class:`MissingDependencyError` without the runtime's library (or, for
    TensorRT, without a GPU), and :class:`EngineBuildError` when TensorRT rejects
    the model.
    """
    onnx_path, output = Path(onnx_path), Path(output)
    if not isinstance(config, EngineBuildConfig):
        raise UserInputError(f"config must be an EngineBuildConfig, got {type(config).__name__}")
    # every user error first (paths, metadata, precision), then the environment, then slow work
    check_engine_paths(onnx_path, output)
    check_outputs(inputs=[onnx_path], files={"output": output, "--timing-cache": config.timing_cache})
    info = read_onnx_info(onnx_path)
    if info.precision != config.precision:
        raise UserInputError(
            f"{str(onnx_path)!r} is a {info.precision} ONNX; an engine has the precision of its ONNX graph, so it "
            f"builds a {info.precision} engine only (use --{info.precision}), or make the {config.precision} ONNX "
            "first from the FP32 one ('dacovid-export trt' does that when given the FP32 ONNX)"
        )
    trt, runtime, why, gpu = prepare_build(config, device)
    if log is not None:
        log(f"runtime: {runtime} {trt.__version__} ({why})")
    phases = StepTimer(log is not None, log=log, decimals=2)
    if precision_seconds is not None:
        phases.seconds["precision"] = precision_seconds
    converted = None if converted_from is None else onnx_path
    if gpu is None:
        result = _build_on_device(trt, gpu, info, onnx_path, converted, output, config, phases, log, progress)
    else:
        import torch

        with torch.cuda.device(gpu.index):
            result = _build_on_device(trt, gpu, info, onnx_path, converted, output, config, phases, log, progress)
    return dataclasses.replace(result, runtime_reason=why)


def prepare_build(config: EngineBuildConfig, device: str = "cuda") -> tuple["ModuleType", str, str, "GpuInfo | None"]:
    """The runtime ``config`` builds with, its library, why it was chosen, and the build GPU (``None``: none needed).

    Raises the environment's errors (library missing, option the runtime lacks, GPU too old) before any slow work.
    """
    from dacovid_export.trt.library import (
        cuda_visible,
        gpu_info,
        import_runtime,
        resolve_runtime,
    )

    runtime, why = resolve_runtime(config.runtime)
    config.check_runtime(runtime, why)
    trt = import_runtime(runtime)
    # TensorRT builds on the GPU it targets; TensorRT-RTX needs one only to load the engine it built
    gpu = gpu_info(device) if runtime == "tensorrt" or cuda_visible() else None
    if config.hardware_compatible and gpu is not None and gpu.compute_capability < (8, 0):
        raise UserInputError(
            f"--hardware-compatible (ampere+) engines must be built on a GPU of compute capability >= 8.0, "
            f"but {gpu.name} is {gpu.compute_capability_str}: build without it"
        )
    return trt, runtime, why, gpu


def _build_on_device(
    trt: "ModuleType",
    gpu: "GpuInfo | None",
    info: "ArtifactInfo",
    source: Path,
    converted: Path | None,
    output: Path,
    config: EngineBuildConfig,
    phases: StepTimer,
    log: Log | None,
    progress: bool,
) -> EngineBuildResult:
    from dacovid_export.core.versions import parse_version
    from dacovid_export.engine.trtexec import TRTEXEC_MAJORS
    from dacovid_export.trt.library import get_logger, is_rtx, make_progress_monitor
    from dacovid_export.trt.network import parse_onnx, read_layer_precisions

    rtx = is_rtx(trt)
    logger, tlog = get_logger(trt)
    tlog.take_errors()
    tlog.echo = log
    try:
        with phases.step("parse", str(source)):
            parsed = parse_onnx(trt, source)
            builder, network = parsed.builder, parsed.network
            chw = _network_io(network, info, config, source)
            precisions = read_layer_precisions(trt, network, source)

        builder_config = builder.create_builder_config()
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
        builder_config.builder_optimization_level = config.opt_level
        targets: tuple[str, ...] = ()
        if rtx:
            targets = _set_rtx_targets(trt, builder_config, config.target_cc)
        elif config.hardware_compatible:
            builder_config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        profile = builder.create_optimization_profile()
        shapes = tuple((b, *chw) for b in (config.min_batch, config.opt_batch, config.max_batch))
        profile.set_shape(info.input_name, *shapes)
        if builder_config.add_optimization_profile(profile) < 0:
            raise EngineBuildError(f"TensorRT rejected the batch profile {shapes}: {_said(tlog)}")
        cache = _attach_timing_cache(builder_config, config.timing_cache)
        monitor = make_progress_monitor(trt) if progress else None
        if monitor is not None:
            builder_config.progress_monitor = monitor

        # build_serialized_network builds and serializes in one call
        with phases.step("build+serialize", f"{config.precision}, batch {config.min_batch}/{config.opt_batch}/{config.max_batch}"):
            serialized = builder.build_serialized_network(network, builder_config)
            if serialized is None:
                raise EngineBuildError(_build_failure(tlog, source, config, targets))
            blob = memoryview(serialized).tobytes()
        del serialized

        with phases.step("verify"):
            io, verified = _verify_engine(trt, logger, tlog, blob, info, shapes, network, gpu)
        if log is not None:
            log(f"verify: {verified}")

        with phases.step("write", str(output)):
            trtexec: list[str] = []
            if not rtx:
                # flags are known for 10.x and 11.x; a newer major records the 11.x form
                major = min(parse_version(str(trt.__version__))[0], TRTEXEC_MAJORS[-1])
                trtexec = _trtexec_for(source, output, config, major, info.input_name, chw[1], chw[0])
            metadata = _engine_metadata(
                trt, gpu, info, source, output, config, shapes, io, blob, phases, trtexec, targets, precisions, verified
            )
            # the cache first: it is valid on its own, and a failure saving it must not leave an engine behind
            if cache is not None and config.timing_cache is not None:
                _save_timing_cache(builder_config, config.timing_cache)
            metadata_path = _write_engine_and_sidecar(output, blob, metadata)
    finally:
        tlog.echo = None

    from dacovid_export.artifacts.engine_metadata import read_engine_metadata

    return EngineBuildResult(
        engine_path=output,
        metadata_path=metadata_path,
        onnx_path=source,
        converted_onnx=converted,
        metadata=read_engine_metadata(output),
        phase_seconds=dict(phases.seconds),
        timing_cache=config.timing_cache,
        trtexec=trtexec,
        layer_precisions=precisions,
        verified=verified,
    )


def _trtexec_for(
    source: Path, output: Path, config: EngineBuildConfig, major: int, input_name: str, image_size: int, channels: int = 3
) -> list[str]:
    """The trtexec argv of TensorRT ``major`` that builds what ``config`` asks for."""
    from dacovid_export.engine.trtexec import trtexec_command

    return trtexec_command(
        source,
        output,
        trt_major=major,
        input_name=input_name,
        image_size=image_size,
        channels=channels,
        min_batch=config.min_batch,
        opt_batch=config.opt_batch,  # type: ignore[arg-type]
        max_batch=config.max_batch,
        workspace_gib=config.workspace_gib,
        opt_level=config.opt_level,
        timing_cache=config.timing_cache,
        hardware_compatible=config.hardware_compatible,
    )


def _set_rtx_targets(trt: "ModuleType", builder_config: Any, target_cc: tuple[str, ...]) -> tuple[str, ...]:
    """Set TensorRT-RTX's target compute capabilities; the list the engine is compiled for."""
    if not target_cc:
        return RTX_DEFAULT_TARGETS
    builder_config.num_compute_capabilities = len(target_cc)
    for i, cc in enumerate(target_cc):
        builder_config.set_compute_capability(getattr(trt.ComputeCapability, RTX_TARGETS[cc]), i)
    return target_cc


def _build_failure(tlog: "TrtLog", source: Path, config: EngineBuildConfig, targets: tuple[str, ...]) -> str:
    errors = tlog.take_errors()
    if "7.5" in targets and any("FP32 GEMM is not supported" in e for e in errors):
        # TensorRT-RTX has no FP32 GEMM on Turing, and this model's attention must stay FP32 (FP16 overflows)
        return (
            "TensorRT-RTX cannot build for Turing (compute capability 7.5): it has no FP32 matrix multiply there, and "
            "this model's attention MatMuls must stay FP32 because their energies overflow FP16; drop 7.5 from "
            "--target-cc, or build on the Turing GPU with TensorRT 10.x (--runtime tensorrt)"
        )
    return (
        f"TensorRT could not build an engine from {str(source)!r}: {_said_of(errors)} "
        f"(try a larger --workspace than {config.workspace_gib:g} GiB or a smaller --max-batch)"
    )


def _said(tlog: "TrtLog") -> str:
    return _said_of(tlog.take_errors())


def _said_of(errors: list[str]) -> str:
    """TensorRT's last error on one line, and how many came before it."""
    if not errors:
        return "TensorRT reported no error message"
    return "TensorRT said: " + one_line(errors[-1]) + (f" (and {len(errors) - 1} earlier error(s))" if len(errors) > 1 else "")


def _network_io(network: Any, info: "ArtifactInfo", config: EngineBuildConfig, source: Path) -> tuple[int, int, int]:
    """C, H, W of the one image input, checked against the ONNX metadata and the batch profile."""
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise EngineBuildError(
            f"{str(source)!r} parsed into {network.num_inputs} inputs and {network.num_outputs} outputs; "
            "expected one image input and one logits output"
        )
    tensor = network.get_input(0)
    if tensor.name != info.input_name:
        raise EngineBuildError(
            f"{str(source)!r}: TensorRT sees input {tensor.name!r} but the metadata names {info.input_name!r}"
        )
    shape = [int(d) for d in tensor.shape]  # N x C x H x W, -1 where dynamic
    if len(shape) != 4:
        raise EngineBuildError(f"{str(source)!r}: input {tensor.name!r} has shape {shape}; expected N x 3 x S x S")
    s = info.image_size
    chw = tuple(d if d > 0 else default for d, default in zip(shape[1:], (3, s, s)))
    if chw != (3, s, s):
        raise EngineBuildError(
            f"{str(source)!r}: input {tensor.name!r} has shape {shape} but the metadata says 3 x {s} x {s} images"
        )
    if shape[0] > 0 and not (config.min_batch == config.opt_batch == config.max_batch == shape[0]):
        raise UserInputError(
            f"{str(source)!r} has a fixed batch of {shape[0]}; build with --min-batch {shape[0]} --opt-batch "
            f"{shape[0]} --max-batch {shape[0]}, or export the ONNX with a dynamic batch"
        )
    out_shape = [int(d) for d in network.get_output(0).shape]
    if out_shape and out_shape[-1] > 0 and out_shape[-1] != info.num_classes:
        raise EngineBuildError(
            f"{str(source)!r}: output has {out_shape[-1]} classes but the metadata lists {info.num_classes} names"
        )
    return chw  # type: ignore[return-value]


def _attach_timing_cache(builder_config: Any, path: Path | None) -> Any:
    """Load ``path`` (or start empty) and attach it; a cache from another GPU/TensorRT is an error, not ignored."""
    if path is None:
        return None
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserInputError(f"timing cache {str(path)!r} is unreadable: {exc}") from exc
    cache = builder_config.create_timing_cache(data)
    if cache is None:
        raise UserInputError(
            f"timing cache {str(path)!r} is damaged or from another TensorRT version: delete it or give another --timing-cache"
        )
    if not builder_config.set_timing_cache(cache, ignore_mismatch=False):
        raise UserInputError(
            f"timing cache {str(path)!r} was recorded on another GPU or TensorRT version: keep one --timing-cache file "
            "per GPU type, or delete this one"
        )
    return cache


def _save_timing_cache(builder_config: Any, path: Path) -> None:
    serialized = builder_config.get_timing_cache().serialize()
    atomic_write_bytes(path, memoryview(serialized).tobytes())


def _dtype_name(trt: "ModuleType", dtype: Any, role: str) -> str:
    if dtype == trt.DataType.FLOAT:
        return "float32"
    if dtype == trt.DataType.HALF:
        return "float16"
    raise EngineBuildError(f"the engine's {role} is {dtype}; only float32/float16 I/O is supported")


def _verify_engine(
    trt: "ModuleType",
    logger: Any,
    tlog: "TrtLog",
    blob: bytes,
    info: "ArtifactInfo",
    shapes: tuple[tuple[int, ...], ...],
    network: Any,
    gpu: "GpuInfo | None",
) -> tuple[dict[str, str], str]:
    """Deserialize the new engine once where a GPU can: it must load and have the expected I/O.

    Returns the I/O dtypes and one sentence on what was verified. A TensorRT-RTX
    engine built without a GPU (or for targets that exclude this GPU) cannot be
    deserialized here; its I/O types are then those of the parsed network.
    """
    from dacovid_export.trt.library import engine_invalidity, is_rtx

    io = {
        "input": _dtype_name(trt, network.get_input(0).dtype, "input"),
        "output": _dtype_name(trt, network.get_output(0).dtype, "output"),
    }
    if gpu is None:
        return io, "not loaded: no GPU here (TensorRT-RTX compiles its kernels on the RTX GPU at first run)"
    runtime = trt.Runtime(logger)
    if is_rtx(trt):
        validity, diagnostics = runtime.get_engine_validity(blob)
        if validity == trt.EngineValidity.INVALID:
            tlog.take_errors()
            return io, f"not loaded: TensorRT-RTX says the engine is not valid on {gpu.name} ({engine_invalidity(trt, diagnostics)})"
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        raise EngineBuildError(f"the engine TensorRT just built does not deserialize: {_said(tlog)}")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if inputs != [info.input_name] or outputs != [info.output_name]:
        raise EngineBuildError(
            f"the built engine has inputs {inputs} and outputs {outputs}; expected [{info.input_name!r}] and [{info.output_name!r}]"
        )
    profile = [tuple(int(d) for d in dims) for dims in engine.get_tensor_profile_shape(info.input_name, 0)]
    if profile != [tuple(s) for s in shapes]:
        raise EngineBuildError(f"the built engine's profile {profile} differs from the requested {list(shapes)}")
    io = {
        "input": _dtype_name(trt, engine.get_tensor_dtype(info.input_name), f"input {info.input_name!r}"),
        "output": _dtype_name(trt, engine.get_tensor_dtype(info.output_name), f"output {info.output_name!r}"),
    }
    del engine, runtime
    return io, f"deserialized on {gpu.name} (compute capability {gpu.compute_capability_str}): I/O and profile as built"


def _onnx_digests(source: Path) -> tuple[str, dict[str, str]]:
    """sha256 of the .onnx file and of each external data file it references."""
    external = {}
    for location in external_data_locations(source):
        data_file = source.parent / location
        if data_file.is_file():
            external[location] = sha256_file(data_file)
    return sha256_file(source), external


def _engine_metadata(
    trt: "ModuleType",
    gpu: "GpuInfo | None",
    info: "ArtifactInfo",
    source: Path,
    output: Path,
    config: EngineBuildConfig,
    shapes: tuple[tuple[int, ...], ...],
    io: dict[str, str],
    blob: bytes,
    phases: StepTimer,
    trtexec: list[str],
    targets: tuple[str, ...],
    precisions: "LayerPrecisions",
    verified: str,
) -> "EngineMetadata":
    from dacovid_export.artifacts.engine_metadata import EngineMetadata
    from dacovid_export.core.versions import package_versions
    from dacovid_export.engine.trtexec import format_command
    from dacovid_export.trt.library import runtime_of

    onnx_sha, external = _onnx_digests(source)
    build = config.to_dict()
    build["seconds"] = {k: round(v, 3) for k, v in phases.seconds.items()}
    build["trtexec"] = format_command(trtexec) if trtexec else None
    build["verified"] = verified
    if gpu is not None:
        build["gpu_memory_gib"] = round(gpu.total_memory_bytes / 2**30, 1)
    runtime = runtime_of(trt)
    if runtime == "tensorrt-rtx":
        build["default_targets"] = not config.target_cc
    return EngineMetadata(
        engine_file=output.name,
        engine_bytes=len(blob),
        engine_sha256=hashlib.sha256(blob).hexdigest(),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu.name if gpu is not None else "",
        compute_capability=gpu.compute_capability if gpu is not None else None,
        hardware_compatible=config.hardware_compatible,
        precision=config.precision,
        input_name=info.input_name,
        output_name=info.output_name,
        input_dtype=io["input"],
        output_dtype=io["output"],
        profile_min=shapes[0],  # type: ignore[arg-type]
        profile_opt=shapes[1],  # type: ignore[arg-type]
        profile_max=shapes[2],  # type: ignore[arg-type]
        class_names=info.class_names,
        preprocessing=info.preprocessing,
        onnx_file=str(source),
        onnx_sha256=onnx_sha,
        onnx_external_data=external,
        source_sha256=info.source_sha256,
        build=build,
        versions=package_versions(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        runtime=runtime,
        compute_capabilities=targets if runtime == "tensorrt-rtx" else (),
        layer_precisions=precisions.to_dict(),
    )


def _write_engine_and_sidecar(output: Path, blob: bytes, metadata: "EngineMetadata") -> Path:
    """Write both through temporary files and renames (engine, then sidecar); on failure neither new file stays."""
    import json

    from dacovid_export.artifacts.engine_metadata import sidecar_path

    side = sidecar_path(output)
    engine_in_place = False
    try:
        with atomic_path(side) as side_tmp:
            side_tmp.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
            with atomic_path(output) as engine_tmp:
                with open(engine_tmp, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())
            engine_in_place = True
    except BaseException:
        if engine_in_place:
            output.unlink(missing_ok=True)
        raise
    return side


# ----------------------------------------------------------------------------- trtexec, without TensorRT


def trtexec_equivalent(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EngineBuildConfig,
    *,
    trt_major: int | None = None,
) -> list[tuple[int, list[str]]]:
    """``[(major, trtexec argv)]`` that build what :func:`build_engine` would; needs neither TensorRT nor a GPU.

    ``trt_major=None``: the installed TensorRT's major version, or both 10 and 11
    when TensorRT is not installed. When an FP32 ONNX is to become FP16/INT8 the
    command names the ONNX that the precision step writes (trtexec has no such
    step), see :func:`precision_onnx_path`.
    """
    from dacovid_export.core.versions import parse_version
    from dacovid_export.engine.trtexec import TRTEXEC_MAJORS
    from dacovid_export.trt.library import installed_tensorrt_version

    onnx_path, output = Path(onnx_path), Path(output)
    check_engine_paths(onnx_path, output)
    info = read_onnx_info(onnx_path)
    have, want = info.precision, config.precision
    if have == want:
        source = onnx_path
    elif have == "fp32":
        source = precision_onnx_path(output, want)
    else:
        raise UserInputError(
            f"{str(onnx_path)!r} is a {have} ONNX and can only become a {have} engine (use --{have})"
        )
    if trt_major is not None:
        majors = [trt_major]
    else:
        installed = installed_tensorrt_version()
        major = parse_version(installed)[0] if installed else None
        majors = [major] if major in TRTEXEC_MAJORS else list(TRTEXEC_MAJORS)
    return [
        (
            major,
            _trtexec_for(source, output, config, major, info.input_name, info.image_size),  # type: ignore[arg-type]
        )
        for major in majors
    ]

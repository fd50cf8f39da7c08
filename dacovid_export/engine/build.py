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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.engine_metadata import read_engine_metadata
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.core.errors import EngineBuildError, UserInputError
from dacovid_export.core.fileio import atomic_write_bytes
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.core.progress import StepTimer
from dacovid_export.core.versions import format_version, parse_version
from dacovid_export.engine.config import (
    EngineBuildConfig,
    EngineBuildResult,
    ProfileShapes,
    check_engine_paths,
    refuse_engineless_source,
)
from dacovid_export.engine.sidecar import engine_sidecar, write_engine_and_sidecar
from dacovid_export.engine.trtexec import TRTEXEC_MAJORS, trtexec_for
from dacovid_export.trt.library import (
    cuda_visible,
    engine_invalidity,
    engine_io_names,
    gpu_info,
    import_runtime,
    is_rtx,
    make_progress_monitor,
    resolve_runtime,
    said_of,
    trt_logger,
)
from dacovid_export.trt.network import parse_onnx, read_layer_precisions
from dacovid_export.trt.targets import (
    HARDWARE_COMPATIBLE_MIN_CC,
    RTX_DEFAULT_TARGETS,
    RTX_TARGETS,
)

if TYPE_CHECKING:
    from types import ModuleType

    from dacovid_export.artifacts.info import ArtifactInfo
    from dacovid_export.trt.library import GpuInfo, TrtLog

__all__ = ["build_engine", "prepare_build"]

_log = get_logger("engine")


# ----------------------------------------------------------------------------- the build


def build_engine(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EngineBuildConfig,
    *,
    device: str = "cuda",
    log_steps: bool = False,
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
    ``log_steps`` says one line per phase, and TensorRT's warnings, on the ``dacovid_export.engine``
    and ``dacovid_export.trt`` loggers (``-q`` silences them); ``progress`` draws TensorRT's build
    phases as tqdm bars on stderr.

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
    refuse_engineless_source(info.precision, onnx_path)
    if info.precision != config.precision:
        raise UserInputError(
            f"{str(onnx_path)!r} is a {info.precision} ONNX; an engine has the precision of its ONNX graph, so it "
            f"builds a {info.precision} engine only (use --{info.precision}), or make the {config.precision} ONNX "
            "first from the FP32 one ('dacovid-export trt' does that when given the FP32 ONNX)"
        )
    trt, runtime, why, gpu = prepare_build(config, device)
    if log_steps:
        _log.info(f"runtime: {runtime} {trt.__version__} ({why})")
    phases = StepTimer(log_steps, decimals=2, stage="engine")
    if precision_seconds is not None:
        phases.seconds["precision"] = precision_seconds
    converted = None if converted_from is None else onnx_path
    if gpu is None:
        result = _build_on_device(trt, gpu, info, onnx_path, converted, output, config, phases, progress)
    else:
        import torch

        with torch.cuda.device(gpu.index):
            result = _build_on_device(trt, gpu, info, onnx_path, converted, output, config, phases, progress)
    return dataclasses.replace(result, runtime_reason=why)


def prepare_build(config: EngineBuildConfig, device: str = "cuda") -> tuple["ModuleType", str, str, "GpuInfo | None"]:
    """The runtime ``config`` builds with, its library, why it was chosen, and the build GPU (``None``: none needed).

    Raises the environment's errors (library missing, option the runtime lacks, GPU too old) before any slow work.
    """
    runtime, why = resolve_runtime(config.runtime)
    config.check_runtime(runtime, why)
    trt = import_runtime(runtime)
    # TensorRT builds on the GPU it targets; TensorRT-RTX needs one only to load the engine it built
    gpu = gpu_info(device) if runtime == "tensorrt" or cuda_visible() else None
    if config.hardware_compatible and gpu is not None and gpu.compute_capability < HARDWARE_COMPATIBLE_MIN_CC:
        raise UserInputError(
            f"--hardware-compatible (ampere+) engines must be built on a GPU of compute capability "
            f">= {format_version(HARDWARE_COMPATIBLE_MIN_CC)}, "
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
    progress: bool,
) -> EngineBuildResult:
    """Parse, configure, build, verify and write, each a phase of ``phases`` (which also says them, if enabled)."""
    logger, tlog = trt_logger(trt)
    tlog.take_errors()
    with tlog.forwarding(phases.enabled):
        with phases.step("parse", str(source)):
            parsed = parse_onnx(trt, source)
            chw = _network_io(parsed.network, info, config, source)
            precisions = read_layer_precisions(trt, parsed.network, source)
        plan = _configure_builder(trt, parsed.builder, tlog, info, config, chw, progress)

        # build_serialized_network builds and serializes in one call
        with phases.step("build+serialize", f"{config.precision}, batch {config.min_batch}/{config.opt_batch}/{config.max_batch}"):
            serialized = parsed.builder.build_serialized_network(parsed.network, plan.builder_config)
            if serialized is None:
                raise EngineBuildError(_build_failure(tlog, source, config, plan.targets))
            blob = memoryview(serialized).tobytes()
        del serialized

        with phases.step("verify"):
            io, verified = _verify_engine(trt, logger, tlog, blob, info, plan.shapes, parsed.network, gpu)
        info_if(_log, f"verify: {verified}", phases.enabled)

        with phases.step("write", str(output)):
            trtexec = [] if is_rtx(trt) else _trtexec_line(trt, source, output, config, info, chw)
            metadata = engine_sidecar(
                trt, gpu, info, source, output, config, plan.shapes, io, blob, phases, trtexec, plan.targets, precisions,
                verified,
            )
            # the cache first: it is valid on its own, and a failure saving it must not leave an engine behind
            if plan.timing_cache is not None and config.timing_cache is not None:
                _save_timing_cache(plan.builder_config, config.timing_cache)
            metadata_path = write_engine_and_sidecar(output, blob, metadata)

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


@dataclasses.dataclass(frozen=True)
class _BuilderPlan:
    """What :func:`_configure_builder` set up: the builder config, the batch profile's shapes and the RTX targets."""

    builder_config: Any
    shapes: ProfileShapes
    targets: tuple[str, ...]  # TensorRT-RTX compute capabilities; () for TensorRT
    timing_cache: Any  # the attached trt.ITimingCache, or None


def _configure_builder(
    trt: "ModuleType",
    builder: Any,
    tlog: "TrtLog",
    info: "ArtifactInfo",
    config: EngineBuildConfig,
    chw: tuple[int, int, int],
    progress: bool,
) -> _BuilderPlan:
    """Workspace, optimization level, targets or hardware compatibility, the batch profile, timing cache, progress."""
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    builder_config.builder_optimization_level = config.opt_level
    targets: tuple[str, ...] = ()
    if is_rtx(trt):
        targets = _set_rtx_targets(trt, builder_config, config.target_cc)
    elif config.hardware_compatible:
        builder_config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    profile = builder.create_optimization_profile()
    (c, h, w), (low, opt, high) = chw, config.batch_profile
    shapes: ProfileShapes = ((low, c, h, w), (opt, c, h, w), (high, c, h, w))
    profile.set_shape(info.input_name, *shapes)
    if builder_config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT rejected the batch profile {shapes}: {tlog.take_said()}")
    cache = _attach_timing_cache(builder_config, config.timing_cache)
    monitor = make_progress_monitor(trt) if progress else None
    if monitor is not None:
        builder_config.progress_monitor = monitor
    return _BuilderPlan(builder_config, shapes, targets, cache)


def _trtexec_line(
    trt: "ModuleType", source: Path, output: Path, config: EngineBuildConfig, info: "ArtifactInfo", chw: tuple[int, int, int]
) -> list[str]:
    """The trtexec command of this build, for the sidecar (TensorRT only)."""
    # flags are known for 10.x and 11.x; a newer major records the 11.x form
    major = min(parse_version(str(trt.__version__))[0], TRTEXEC_MAJORS[-1])
    return trtexec_for(source, output, config, major, info.input_name, chw[1], chw[0])


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
        f"TensorRT could not build an engine from {str(source)!r}: {said_of(errors)} "
        f"(try a larger --workspace than {config.workspace_gib:g} GiB or a smaller --max-batch)"
    )


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
    c, h, w = (d if d > 0 else default for d, default in zip(shape[1:], (3, s, s)))
    chw = (c, h, w)
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
    return chw


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
    shapes: ProfileShapes,
    network: Any,
    gpu: "GpuInfo | None",
) -> tuple[dict[str, str], str]:
    """Deserialize the new engine once where a GPU can: it must load and have the expected I/O.

    Returns the I/O dtypes and one sentence on what was verified. A TensorRT-RTX
    engine built without a GPU (or for targets that exclude this GPU) cannot be
    deserialized here; its I/O types are then those of the parsed network.
    """
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
        raise EngineBuildError(f"the engine TensorRT just built does not deserialize: {tlog.take_said()}")
    inputs, outputs = engine_io_names(trt, engine)
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



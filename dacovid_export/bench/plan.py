"""Planning a benchmark: which backends to open, with which options, for each artifact; all checks before timing."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend, check_batch
from dacovid_export.backends.registry import (
    BACKEND_FOR_KIND,
    BACKENDS,
    BF16_BACKEND,
    CPU_INT8_BACKEND,
    BackendOptions,
    auto_backend,
    backend_class,
    open_backend,
    resolve_device,
    unavailable_reason,
)
from dacovid_export.bench.config import BenchConfig
from dacovid_export.core.errors import MissingDependencyError, UserInputError
from dacovid_export.core.log import get_logger
from dacovid_export.core.openvino_model import cpu_supports_bf16

__all__ = ["Run", "plan_runs", "open_run", "check_batches"]

_log = get_logger("bench")


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed configuration: an artifact on one backend with its options and the labels of its records."""

    path: str
    info: ArtifactInfo
    backend: str
    options: BackendOptions
    precision: str | None  # None: the artifact's own
    variant: str
    why: str | None = None  # auto's sentence for the runtime it chose (FP32 ONNX on the CPU)


def _torch_runs(path: str, info: ArtifactInfo, config: BenchConfig) -> list[Run]:
    torch = BACKEND_FOR_KIND["checkpoint"]
    flags = [name for name in ("channels_last", "cuda_graphs", "compile") if getattr(config, name)]
    label = "+".join(flags)

    def options(precision: str, *, flagged: bool = True) -> BackendOptions:
        if not flagged:
            return BackendOptions(precision=precision)
        return BackendOptions(
            precision=precision, channels_last=config.channels_last, cuda_graphs=config.cuda_graphs, compile=config.compile
        )

    runs = [Run(path, info, torch, options("fp32", flagged=False), "fp32", "eager")]
    if flags:
        runs.append(Run(path, info, torch, options("fp32"), "fp32", label))
    for p in config.autocast:
        runs.append(Run(path, info, torch, options(p), p, "+".join(["autocast", *flags])))
    return runs


def plan_runs(
    artifacts: Sequence[str | os.PathLike[str]], config: BenchConfig
) -> tuple[list[Run], list[tuple[str, str]]]:
    """The runs to time, and the engines skipped because they cannot run here (with the reason)."""
    if not artifacts:
        raise UserInputError("no artifacts given: name at least one checkpoint, ONNX model or engine")
    if config.backend != "auto":
        # a runtime that is not installed is the first thing to say, whatever the artifacts
        backend_class(config.backend)
    runs: list[Run] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for artifact in artifacts:
        path = str(artifact)
        if path in seen:
            raise UserInputError(f"artifact {path!r} is named twice")
        seen.add(path)
        info = read_artifact_info(path)
        reason = unavailable_reason(path)
        if reason is not None:
            skipped.append((path, reason))
            continue
        if config.backend == "auto":
            backend_class(BACKEND_FOR_KIND[info.kind])
        if config.image_size is not None and config.image_size != info.image_size:
            raise UserInputError(
                f"image_size={config.image_size}: {path!r} was made for {info.image_size}x{info.image_size} inputs; "
                "omit --image-size to use each artifact's own size, or export the model at that size"
            )
        # the batch limits the metadata states (a static ONNX batch, an engine profile), before loading anything
        check_batches(info, config)
        runs.extend(_artifact_runs(path, info, config))
    if config.torch_options_set and not any(r.backend == BACKEND_FOR_KIND["checkpoint"] for r in runs):
        raise UserInputError(
            "--autocast/--channels-last/--cuda-graphs/--compile apply to PyTorch checkpoints, and no checkpoint was given"
        )
    if not runs:
        raise MissingDependencyError("nothing can run here: " + "; ".join(f"{p}: {r}" for p, r in skipped))
    return runs, skipped


def _artifact_runs(path: str, info: ArtifactInfo, config: BenchConfig) -> list[Run]:
    """A checkpoint's PyTorch variants, an ONNX model's runtime rows, or the one run of the backend named."""
    if info.kind == "checkpoint" and config.backend in ("auto", BACKEND_FOR_KIND["checkpoint"]):
        return _torch_runs(path, info, config)
    if info.kind == "onnx" and config.backend in ("auto", CPU_INT8_BACKEND):
        return _onnx_runs(path, info, config)
    return [Run(path, info, config.backend, BackendOptions(), None, "default")]


def _onnx_runs(path: str, info: ArtifactInfo, config: BenchConfig) -> list[Run]:
    """ONNX Runtime (auto) and OpenVINO rows of one ONNX model; see :class:`BenchConfig`."""
    runs: list[Run] = []
    if info.precision == "bf16":
        # a BF16-marked model has one way to run: OpenVINO at bf16 (open_backend sets the hint from the model)
        why = auto_backend(path, config.device)[1] if config.backend == "auto" else None
        if why:
            _log.info(why)
        return [Run(path, info, BF16_BACKEND, BackendOptions(), None, "default", why)]
    ort = BACKEND_FOR_KIND["onnx"]
    if config.backend == "auto":
        on_cpu = resolve_device(config.device, ort) == "cpu"
        if on_cpu and info.precision == "fp32":
            return _fp32_cpu_runs(path, info, config)
        runs.append(Run(path, info, ort, BackendOptions(), None, "default"))
        extra_fp32 = (config.openvino_fp32 or config.openvino_bf16) and info.precision == "fp32"
        if not (on_cpu and (info.precision == "int8" or extra_fp32)):
            return runs
        backend_class(CPU_INT8_BACKEND)
    if config.backend == CPU_INT8_BACKEND or info.precision == "int8" or (config.openvino_fp32 and info.precision == "fp32"):
        runs.append(Run(path, info, CPU_INT8_BACKEND, _fp32_options(CPU_INT8_BACKEND), None, "default"))
    if config.openvino_bf16 and info.precision == "fp32":
        runs.append(_bf16_run(path, info))
    return runs


def _fp32_cpu_runs(path: str, info: ArtifactInfo, config: BenchConfig) -> list[Run]:
    """FP32 ONNX on the CPU under ``auto``: the runtime ``auto`` chooses (the one Predictor, check, pipeline and
    the served model use), then, with ``openvino_fp32``, the other FP32 runtime too (the evidence for the
    choice), then the BF16 row if asked."""
    if config.openvino_fp32 or config.openvino_bf16:
        backend_class(CPU_INT8_BACKEND)  # the missing-package error, naming what to install
    chosen, why = auto_backend(path, "cpu", threads=config.threads)
    if why:
        _log.info(why)
    runs = [Run(path, info, chosen, _fp32_options(chosen), None, "default", why)]
    if config.openvino_fp32:
        # the other of the two FP32 CPU runtimes auto measures (backends.cpu_choice)
        other = BACKEND_FOR_KIND["onnx"] if chosen == CPU_INT8_BACKEND else CPU_INT8_BACKEND
        runs.append(Run(path, info, other, _fp32_options(other), None, "default"))
    if config.openvino_bf16:
        runs.append(_bf16_run(path, info))
    return runs


def _bf16_run(path: str, info: ArtifactInfo) -> Run:
    """The row of an FP32 model run in BF16 (``openvino_bf16``); refused on a CPU without BF16."""
    if not cpu_supports_bf16():
        raise UserInputError("openvino_bf16: this CPU has no BF16 support (OpenVINO reports none); drop --openvino-bf16")
    option = BACKENDS[BF16_BACKEND].cls.precision_option
    return Run(path, info, BF16_BACKEND, BackendOptions().with_value(option, "bf16"), "bf16", "bf16")


def _fp32_options(backend: str) -> BackendOptions:
    """FP32 set explicitly where the backend takes a precision hint (OpenVINO's CPU default may be BF16)."""
    return BackendOptions().with_value(BACKENDS[backend].cls.precision_option, "fp32")


def open_run(run: Run, config: BenchConfig) -> Backend:
    options = run.options
    if config.threads is not None and run.info.kind == "onnx":
        options = options.with_value(BACKENDS[run.backend].cls.thread_option, config.threads)
    return open_backend(run.path, backend=run.backend, device=config.device, options=options)


def check_batches(info: ArtifactInfo, config: BenchConfig) -> None:
    """Every batch size against an artifact's limits (an engine's profile, a static ONNX batch)."""
    s = info.image_size
    for b in config.batch_sizes:
        # a zero-strided view of one float: check_batch rejects a bad shape before it copies anything
        check_batch(np.broadcast_to(np.zeros((), dtype=np.float32), (b, 3, s, s)), info)

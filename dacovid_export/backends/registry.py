"""Which backend runs which artifact, and :func:`open_backend` to get one.

File kind decides the default: checkpoint -> PyTorch, ``.onnx`` -> ONNX Runtime,
``.engine``/``.plan`` -> TensorRT; a BF16-marked ONNX model -> OpenVINO at ``bf16`` (it is
made for that and nothing else runs it so); two exceptions on the CPU, each said on stderr by
:func:`open_backend`: an INT8 (Q/DQ) ONNX model goes to OpenVINO, which runs it as INT8,
while ONNX Runtime runs its signed Q/DQ form slower than FP32 (docs/design.md section 5);
an FP32 ONNX model goes to whichever of ONNX Runtime and OpenVINO (``f32``) is faster and
faithful on this CPU, measured once and cached (:mod:`dacovid_export.backends.cpu_choice`).
Every backend is one entry of :data:`BACKENDS` (its class and the check of its
package); what a backend is (name, artifact kind, devices, its thread and precision
options, whether it runs INT8 on the CPU: attributes of the class) is asked of the
class, and the names, the default backend per kind, :data:`CPU_INT8_BACKEND`,
:data:`BF16_BACKEND` and bench's choices are derived from that table, so a new
backend is one class and one entry, and bench and the pipeline never name one.
Backend modules import their runtime library only when an artifact is opened, and
a backend's package is checked when it is chosen, so a missing optional package is
reported as one line naming what to install.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from dacovid_export.artifacts.info import ArtifactKind, artifact_kind
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.backends.onnxruntime_backend import OnnxRuntimeBackend
from dacovid_export.backends.openvino_backend import OpenVINOBackend
from dacovid_export.backends.options import BackendOptions
from dacovid_export.backends.tensorrt_backend import (
    TensorRTBackend,
    engine_unavailable_reason,
)
from dacovid_export.backends.torch_backend import TorchBackend
from dacovid_export.core.deps import require
from dacovid_export.core.errors import MissingDependencyError, UserInputError
from dacovid_export.core.log import get_logger
from dacovid_export.trt.library import (
    RTX_INSTALL_HINT,
    TRT_INSTALL_HINT,
    installed_runtimes,
)

__all__ = [
    "BackendEntry",
    "BackendOptions",
    "BF16_BACKEND",
    "CPU_INT8_BACKEND",
    "backend_label",
    "BACKENDS",
    "BACKEND_NAMES",
    "BACKEND_FOR_KIND",
    "KINDS_OF_BACKEND",
    "DEVICES",
    "open_backend",
    "backend_class",
    "resolve_device",
    "auto_backend",
    "unavailable_reason",
]

_log = get_logger("backends")

DEVICES = ("auto", "cpu", "cuda")
_KIND_WORDS_PLURAL = {"checkpoint": "checkpoints", "onnx": "ONNX models", "engine": "TensorRT engines"}
_KIND_WORDS = {"checkpoint": "a checkpoint (.pt/.pth)", "onnx": "an ONNX model (.onnx)", "engine": "a TensorRT engine (.engine/.plan)"}


def _require_tensorrt() -> None:
    # the engine's sidecar names its runtime (TensorRT or TensorRT-RTX): the backend imports that one on load
    if not installed_runtimes():
        raise MissingDependencyError(
            f"neither TensorRT nor TensorRT-RTX is installed (needed to run engines): {TRT_INSTALL_HINT}, "
            f"or {RTX_INSTALL_HINT}"
        )


@dataclasses.dataclass(frozen=True)
class BackendEntry:
    """One backend: its class and the check of its package; the rest is asked of the class.

    ``require`` raises :class:`MissingDependencyError` when the backend's package is
    absent; ``devices`` is ``"any"`` or the one device it runs on (``"cpu"`` or
    ``"cuda"``), which ``device="auto"`` then resolves to.
    """

    cls: type[Backend]
    require: Callable[[], None]

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def kind(self) -> ArtifactKind:
        return self.cls.kind

    @property
    def devices(self) -> Literal["any", "cpu", "cuda"]:
        return self.cls.devices


# The one table of backends. The first entry of each artifact kind is that kind's default (backend "auto"
# before the CPU exceptions of auto_backend).
BACKENDS: Mapping[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(TorchBackend, lambda: None),
        BackendEntry(OnnxRuntimeBackend, functools.partial(require, "onnxruntime", "run ONNX models")),
        BackendEntry(OpenVINOBackend, functools.partial(require, "openvino", "run ONNX models with OpenVINO on the CPU")),
        BackendEntry(TensorRTBackend, _require_tensorrt),
    )
}
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
KINDS_OF_BACKEND: Mapping[str, ArtifactKind] = {name: entry.kind for name, entry in BACKENDS.items()}
BACKEND_FOR_KIND: Mapping[ArtifactKind, str] = {
    kind: next(name for name, k in KINDS_OF_BACKEND.items() if k == kind) for kind in dict.fromkeys(KINDS_OF_BACKEND.values())
}
# the ONNX runtime that runs a Q/DQ model's INT8 as INT8 on the CPU, and the one that takes an explicit BF16
# hint for FP32 models (and so runs BF16-marked ones): both OpenVINO today, each asked of the classes
CPU_INT8_BACKEND: str = next(name for name, e in BACKENDS.items() if e.cls.int8_on_cpu)
BF16_BACKEND: str = next(name for name, e in BACKENDS.items() if "bf16" in e.cls.precision_choices)


def backend_label(backend: str) -> str:
    """The runtime's name in reports (``"ONNX Runtime"``); the name itself for one outside the table."""
    entry = BACKENDS.get(backend)
    return entry.cls.label if entry is not None else backend


def backend_class(backend: str) -> type[Backend]:
    """The class behind a backend name, its package checked now; :class:`MissingDependencyError` if it is absent."""
    entry = BACKENDS.get(backend)
    if entry is None:
        raise UserInputError(f"unknown backend {backend!r}: use 'auto' or one of {', '.join(BACKEND_NAMES)}")
    entry.require()
    return entry.cls


def unavailable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why the artifact at ``path`` cannot run on this machine, or ``None`` if it can (or its problem is an input error).

    Only engines can be unrunnable for reasons that are nobody's fault: their
    runtime library is not installed, or there is no GPU. Callers skip such an
    engine and say why instead of failing the whole run.
    """
    if artifact_kind(path) != "engine":
        return None
    return engine_unavailable_reason(path)


def resolve_device(device: str, backend: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable (always for TensorRT), else ``"cpu"``; others validated."""
    entry = BACKENDS.get(backend)
    only = entry.devices if entry is not None else "any"
    if device == "auto":
        if only != "any":
            return only
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    prefix, _, index = device.partition(":") if isinstance(device, str) else ("", "", "")
    if not (device == "cpu" or (prefix == "cuda" and (index == "" or index.isdigit()))):
        raise UserInputError(f"device={device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if only == "cuda" and device == "cpu":
        raise UserInputError(f"{_KIND_WORDS_PLURAL[entry.kind]} run on an NVIDIA GPU only: use device 'cuda' (or 'auto')")
    if only == "cpu" and device != "cpu":
        raise UserInputError(f"device={device!r}: the {backend} backend runs on the CPU only; use device 'cpu' (or 'auto')")
    return device


def auto_backend(path: str | os.PathLike[str], device: str, *, threads: int | None = None) -> tuple[str, str | None]:
    """``(backend, why)`` for ``backend="auto"``: by file kind, except ONNX on the CPU: INT8 -> OpenVINO,
    FP32 -> the faster faithful runtime (:func:`~dacovid_export.backends.cpu_choice.choose_cpu_runtime`,
    timed with ``threads``).

    ``why`` is a sentence for the user when the choice needed a decision, else None.
    """
    kind = artifact_kind(path)
    backend = BACKEND_FOR_KIND[kind]
    if kind == "onnx" and read_artifact_info(path).precision == "bf16":
        # marked for BF16 by its guard: only OpenVINO runs it so (on the CPU, whatever GPU there is), hint set explicitly
        return BF16_BACKEND, (
            f"backend auto: {Path(path).name} is marked for BF16 (it passed the BF16 accuracy guard): using OpenVINO "
            "on the CPU with inference precision bf16"
        )
    if kind != "onnx" or resolve_device(device, backend) != "cpu":
        return backend, None
    precision = read_artifact_info(path).precision
    if precision == "fp32":
        from dacovid_export.backends.cpu_choice import choose_cpu_runtime

        choice = choose_cpu_runtime(path, threads=threads)
        # a choice the user pinned (or ONNX Runtime, openvino not installed) is not news: said only when decided here
        return choice.backend, (choice.sentence(Path(path).name) if choice.source != "pinned" else None)
    if precision != "int8":
        return backend, None
    try:
        BACKENDS[CPU_INT8_BACKEND].require()
    except MissingDependencyError:
        return backend, (
            "backend auto: INT8 model on the CPU, but openvino is not installed: using ONNX Runtime, which runs "
            "signed Q/DQ models slower than FP32 (pip install openvino)"
        )
    return CPU_INT8_BACKEND, (
        f"backend auto: {Path(path).name} is INT8 and runs on the CPU: using OpenVINO, which runs its Q/DQ as INT8 "
        "(ONNX Runtime runs this signed Q/DQ form slower than FP32); pass backend 'onnxruntime' to override"
    )


def open_backend(
    path: str | os.PathLike[str],
    *,
    backend: str = "auto",
    device: str = "auto",
    options: BackendOptions | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    cuda_graphs: bool | None = None,
    compile: bool | None = None,
    tf32: bool | None = None,
    provider: str | None = None,
    intra_op_threads: int | None = None,
    graph_optimization: str | None = None,
    inference_precision: str | None = None,
    threads: int | None = None,
    runtime_cache: str | os.PathLike[str] | bool | None = None,
) -> Backend:
    """Load ``path`` into the backend that runs it and return that backend (a context manager).

    ``backend="auto"`` picks by file kind; naming a backend that cannot run this
    kind of file is an error, not a conversion. The options (see :class:`BackendOptions`;
    given one by one, or as ``options`` by a caller that holds the record) go to the
    backend's constructor; an option the backend does not take is an error that lists
    the ones it does.
    """
    named = BackendOptions(
        precision=precision, channels_last=channels_last, cuda_graphs=cuda_graphs, compile=compile, tf32=tf32,
        provider=provider, intra_op_threads=intra_op_threads, graph_optimization=graph_optimization,
        inference_precision=inference_precision, threads=threads, runtime_cache=runtime_cache,
    )
    if options is not None and named.given():
        raise UserInputError(
            f"options given twice: as options= and as {', '.join(sorted(named.given()))}; give them one way"
        )
    chosen = options if options is not None else named
    kind = artifact_kind(path)
    why = None
    if backend == "auto":
        backend, why = _auto_for_options(path, kind, device, chosen)
        chosen = chosen.with_threads_as(BACKENDS[backend].cls.thread_option)
    elif backend not in BACKEND_NAMES:
        raise UserInputError(f"unknown backend {backend!r}: use 'auto' or one of {', '.join(BACKEND_NAMES)}")
    if KINDS_OF_BACKEND[backend] != kind:
        runners = [b for b, k in KINDS_OF_BACKEND.items() if k == kind]
        raise UserInputError(
            f"backend {backend!r} cannot run {str(path)!r}, which is {_KIND_WORDS[kind]}; "
            f"use backend {' or '.join(repr(b) for b in runners)} (or 'auto')"
        )
    device = resolve_device(device, backend)
    cls = backend_class(backend)
    given = chosen.given()
    _check_options(cls, backend, given)
    opened = cls(path, device=device, **given)
    if why is not None:
        _log.info(why)
    return opened


def _accepted_options(cls: type[Backend]) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return sorted(name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "device")


def _auto_for_options(path: str | os.PathLike[str], kind: ArtifactKind, device: str, options: BackendOptions) -> tuple[str, str | None]:
    """``auto``'s backend: an ONNX option only one runtime takes names it (``inference_precision`` -> OpenVINO,
    ``provider``/... -> ONNX Runtime); otherwise :func:`auto_backend`, timed with the thread count given."""
    named = set(options.given()) - {cls.thread_option for cls in (e.cls for e in BACKENDS.values())}
    if named and kind == "onnx":
        takers = [e.name for e in BACKENDS.values() if e.kind == kind and named <= set(_accepted_options(e.cls))]
        # none takes them all: the kind's default, whose constructor check then names what it does not take
        return (takers[0] if takers else BACKEND_FOR_KIND[kind]), None
    return auto_backend(path, device, threads=options.thread_count)


def _check_options(cls: type[Backend], backend: str, options: Mapping[str, object]) -> None:
    accepted = _accepted_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserInputError(
            f"the {backend} backend has no option(s) {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'none'}"
        )

"""The one module that imports TensorRT or TensorRT-RTX: lazy import, version rules, logger, GPU facts.

Everything else in the package gets the ``tensorrt`` (or ``tensorrt_rtx``)
module object from :func:`import_runtime` and never imports either itself, so
``import dacovid_export`` and every ``--help`` work without them, and the
version policy lives here.

Two runtimes. ``tensorrt`` (TensorRT 10.8+/11.x) builds on the GPU that will run
the engine, so building needs a GPU; it serves every NVIDIA GPU from Turing to
data-centre parts (H100/H200). ``tensorrt-rtx`` (TensorRT for RTX, 1.1+) builds
ahead of time on any machine, GPU or not, for a list of target compute
capabilities, and compiles its kernels just in time on the user's RTX GPU
(Ampere and newer; no SM 9.0 target, and no FP32 GEMM on Turing). Both share
the Python API this project uses; the differences are handled where they occur
and checked with :func:`is_rtx`.

Version policy. Supported: TensorRT 10.x from :data:`MIN_TRT_VERSION` (10.8) and
11.x. Every Python API used (``Builder.create_network``, ``OnnxParser.parse_from_file``
and ``IParserError.node_name/node_operator``, ``IBuilderConfig.set_memory_pool_limit``,
``builder_optimization_level``, ``hardware_compatibility_level``, ``progress_monitor``,
timing caches, ``build_serialized_network``, ``Runtime.deserialize_cuda_engine``,
``set_input_shape``/``set_tensor_address``/``execute_async_v3``) already exists in
10.0; 10.8 is the floor because 10.7 taught the ONNX parser mixed-precision
BatchNormalization in strongly typed mode and 10.8 fixed wrong results with
optimization profiles (TensorRT OSS changelog), both on the path this project takes.

Strong typing. On 10.x the network is created with the opt-in
``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; 11.x networks are always
strongly typed and the flag is kept only as a deprecated no-op, so nothing is
passed there. No precision builder flag is ever set (11.x removed them).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dacovid_export.artifacts.engine_metadata import RUNTIMES
from dacovid_export.core.errors import (
    MissingDependencyError,
    UserInputError,
    first_line,
    one_line,
)
from dacovid_export.core.versions import format_version, parse_version

__all__ = [
    "RUNTIME_CHOICES",
    "MIN_RTX_VERSION",
    "RTX_INSTALL_HINT",
    "import_runtime",
    "import_tensorrt_rtx",
    "installed_runtimes",
    "resolve_runtime",
    "runtime_of",
    "is_rtx",
    "install_hint",
    "cuda_visible",
    "engine_invalidity",
    "MIN_TRT_VERSION",
    "SUPPORTED_TRT_MAJORS",
    "TRT_INSTALL_HINT",
    "GpuInfo",
    "import_tensorrt",
    "tensorrt_version",
    "installed_tensorrt_version",
    "check_tensorrt_version",
    "network_creation_flags",
    "gpu_info",
    "TrtLog",
    "said_of",
    "engine_io_names",
    "get_logger",
    "make_progress_monitor",
]

MIN_TRT_VERSION: tuple[int, int] = (10, 8)
SUPPORTED_TRT_MAJORS: tuple[int, ...] = (10, 11)
TRT_INSTALL_HINT = "pip install 'dacovid-export[trt]' (TensorRT >= 10.8; needs an NVIDIA GPU and driver)"
RUNTIME_CHOICES: tuple[str, ...] = ("auto", *RUNTIMES)
# 1.1 added Runtime.get_engine_validity, which the load-time check relies on
MIN_RTX_VERSION: tuple[int, int] = (1, 1)
RTX_INSTALL_HINT = (
    "pip install 'dacovid-export[rtx]' (TensorRT-RTX >= 1.1: builds engines without a GPU; they run on RTX GPUs)"
)


def check_tensorrt_version(version: str) -> tuple[int, ...]:
    """Parsed ``version``, or :class:`MissingDependencyError` when it is older than :data:`MIN_TRT_VERSION`."""
    parsed = parse_version(version)
    if parsed[:2] < MIN_TRT_VERSION:
        raise MissingDependencyError(
            f"TensorRT {version} is installed but dacovid-export needs TensorRT >= {format_version(MIN_TRT_VERSION)} "
            f"(strongly typed ONNX builds): pip install -U 'dacovid-export[trt]'"
        )
    return parsed


def _import_library(name: str, label: str, purpose: str, hint: str) -> tuple[ModuleType, str]:
    """Import ``name`` (``tensorrt`` or ``tensorrt_rtx``); its module and version, or one line naming the extra."""
    import importlib

    try:
        trt = importlib.import_module(name)
    except (ImportError, OSError) as exc:
        # OSError: the Python bindings are there but the shared library could not be loaded
        raise MissingDependencyError(f"{label} is not available (needed to {purpose}): {hint}. Import error: {first_line(exc)}") from exc
    version = getattr(trt, "__version__", None)
    if not isinstance(version, str):
        raise MissingDependencyError(f"the installed {name!r} package has no version (a stub or a broken install): {hint}")
    return trt, version


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, checked against the version policy.

    Raises :class:`MissingDependencyError` (one line, naming the ``[trt]`` extra)
    when TensorRT is missing, its libraries cannot be loaded, or it is too old.
    """
    # the project's single TensorRT import
    trt, version = _import_library("tensorrt", "TensorRT", "build and run engines", TRT_INSTALL_HINT)
    parsed = check_tensorrt_version(version)
    if parsed[0] not in SUPPORTED_TRT_MAJORS and not _WARNED_NEWER:
        _warn_newer(version)
    return trt


_WARNED_NEWER = False


def _warn_newer(version: str) -> None:
    global _WARNED_NEWER
    import warnings

    _WARNED_NEWER = True
    warnings.warn(
        f"TensorRT {version} is newer than the versions dacovid-export is written for "
        f"({format_version(MIN_TRT_VERSION)}+ and 11.x); if a TensorRT call fails, use TensorRT 11.x",
        stacklevel=3,
    )


def tensorrt_version() -> str:
    """Version string of the importable TensorRT (imports it; raises like :func:`import_tensorrt`)."""
    return str(import_tensorrt().__version__)


def installed_tensorrt_version() -> str | None:
    """TensorRT's version from package metadata without importing it, or ``None`` if not installed.

    Used to pick trtexec flags on a machine where TensorRT may be installed
    but unusable (no GPU), so it must not import the bindings.
    """
    from importlib import metadata

    for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def import_tensorrt_rtx() -> ModuleType:
    """The ``tensorrt_rtx`` module, checked against :data:`MIN_RTX_VERSION`.

    Raises :class:`MissingDependencyError` (one line, naming the ``[rtx]`` extra)
    when it is missing, its libraries cannot be loaded, or it is too old.
    """
    # the project's single TensorRT-RTX import
    trt, version = _import_library("tensorrt_rtx", "TensorRT-RTX", "build TensorRT-RTX engines", RTX_INSTALL_HINT)
    if parse_version(version)[:2] < MIN_RTX_VERSION:
        raise MissingDependencyError(
            f"TensorRT-RTX {version} is installed but dacovid-export needs >= {format_version(MIN_RTX_VERSION)} "
            "(engine validity checks): pip install -U 'dacovid-export[rtx]'"
        )
    return trt


def import_runtime(runtime: str) -> ModuleType:
    """The module of ``runtime`` (``"tensorrt"`` or ``"tensorrt-rtx"``), imported and version-checked."""
    if runtime == "tensorrt":
        return import_tensorrt()
    if runtime == "tensorrt-rtx":
        return import_tensorrt_rtx()
    raise UserInputError(f"runtime={runtime!r}: use one of {', '.join(RUNTIMES)}")


def runtime_of(trt: ModuleType) -> str:
    """``"tensorrt-rtx"`` for the ``tensorrt_rtx`` module, ``"tensorrt"`` otherwise."""
    return "tensorrt-rtx" if is_rtx(trt) else "tensorrt"


def is_rtx(trt: ModuleType) -> bool:
    return getattr(trt, "__name__", "").split(".")[0] == "tensorrt_rtx"


def install_hint(runtime: str) -> str:
    return RTX_INSTALL_HINT if runtime == "tensorrt-rtx" else TRT_INSTALL_HINT


def installed_runtimes() -> dict[str, str]:
    """``{runtime: version}`` of the TensorRT packages installed, read from package metadata (no import)."""
    from importlib import metadata

    found: dict[str, str] = {}
    trt_version = installed_tensorrt_version()
    if trt_version is not None:
        found["tensorrt"] = trt_version
    for name in ("tensorrt-rtx", "tensorrt_rtx"):
        try:
            found["tensorrt-rtx"] = metadata.version(name)
            break
        except metadata.PackageNotFoundError:
            continue
    return found


def resolve_runtime(requested: str, *, gpu_visible: bool | None = None) -> tuple[str, str]:
    """``(runtime, why)`` for ``requested`` in :data:`RUNTIME_CHOICES`.

    ``auto``: TensorRT when it is installed and a GPU is visible (it builds for
    that GPU), else TensorRT-RTX when installed (it builds anywhere), else a
    :class:`MissingDependencyError` naming both extras. ``why`` is one sentence
    for the user. ``gpu_visible=None`` asks ``torch.cuda``.
    """
    if requested not in RUNTIME_CHOICES:
        raise UserInputError(f"runtime={requested!r}: use one of {', '.join(RUNTIME_CHOICES)}")
    if requested != "auto":
        return requested, f"--runtime {requested}"
    installed = installed_runtimes()
    if gpu_visible is None:
        gpu_visible = cuda_visible()
    if "tensorrt" in installed and gpu_visible:
        return "tensorrt", f"auto: TensorRT {installed['tensorrt']} is installed and a GPU is visible"
    if "tensorrt-rtx" in installed:
        reason = "no GPU is visible" if "tensorrt" in installed else "TensorRT is not installed"
        return "tensorrt-rtx", f"auto: TensorRT-RTX {installed['tensorrt-rtx']} ({reason}; it builds without a GPU)"
    if "tensorrt" in installed:
        raise MissingDependencyError(
            "TensorRT is installed but no GPU is visible, and TensorRT builds only on a GPU: run on a GPU machine, "
            f"or build for RTX GPUs without one: {RTX_INSTALL_HINT}"
        )
    raise MissingDependencyError(
        f"neither TensorRT nor TensorRT-RTX is installed: {RTX_INSTALL_HINT}, or {TRT_INSTALL_HINT}"
    )


def cuda_visible() -> bool:
    """Whether torch sees a CUDA GPU (TensorRT builds need one; TensorRT-RTX builds do not)."""
    import torch

    return bool(torch.cuda.is_available())


def engine_invalidity(trt: ModuleType, diagnostics: int) -> str:
    """TensorRT-RTX's ``get_engine_validity`` diagnostics bits as words ("version mismatch, unsupported cc")."""
    names = [
        name.lower().replace("_", " ")
        for name, member in trt.EngineInvalidityDiagnostics.__members__.items()
        if int(diagnostics) & int(member)  # members are bit values: 1, 2, 4, ...
    ]
    return ", ".join(names) if names else "no reason given"


def network_creation_flags(trt: ModuleType) -> int:
    """Flags for ``Builder.create_network`` that give a strongly typed network (10.x, 11.x and TensorRT-RTX)."""
    if is_rtx(trt):
        # always strongly typed; its only creation flag is STRONGLY_TYPED, kept as a no-op
        return 0
    major = parse_version(trt.__version__)[0]
    if major >= 11:
        # always strongly typed; STRONGLY_TYPED survives only as a deprecated no-op
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine is built on or runs on."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int

    @property
    def compute_capability_str(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def gpu_info(device: str | int = "cuda") -> GpuInfo:
    """Name and compute capability of ``device`` (``"cuda"``, ``"cuda:N"`` or an index), read via ``torch.cuda``.

    Raises :class:`MissingDependencyError` when no CUDA GPU is visible and
    :class:`UserInputError` for a bad device string or index.
    """
    import torch

    index = _device_index(device)
    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT engines are built and run on an "
            "NVIDIA GPU; run on a machine with a GPU and driver, with " + TRT_INSTALL_HINT.split(" (")[0]
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise UserInputError(f"device={device!r}: only {count} CUDA device(s) visible")
    props = torch.cuda.get_device_properties(index)
    return GpuInfo(
        index=index,
        name=str(props.name),
        compute_capability=(int(props.major), int(props.minor)),
        total_memory_bytes=int(props.total_memory),
    )


def _device_index(device: str | int) -> int:
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    if isinstance(device, str):
        prefix, _, index = device.partition(":")
        if prefix == "cuda" and (index == "" or index.isdigit()):
            return int(index) if index else 0
    raise UserInputError(f"device={device!r}: TensorRT runs on a GPU; use 'cuda' or 'cuda:N'")


def said_of(errors: list[str]) -> str:
    """TensorRT's last error on one line, and how many came before it."""
    if not errors:
        return "TensorRT reported no error message"
    return "TensorRT said: " + one_line(errors[-1]) + (f" (and {len(errors) - 1} earlier error(s))" if len(errors) > 1 else "")


def engine_io_names(trt: ModuleType, engine: Any) -> tuple[list[str], list[str]]:
    """An engine's input and output tensor names, in TensorRT's order."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    return inputs, outputs


class TrtLog:
    """What TensorRT logged: errors kept for the one-line failure message (not echoed), warnings forwarded.

    One instance per process (see :func:`get_logger`): TensorRT's documentation
    asks that the logger outlive every builder and runtime made with it, and its
    callbacks may come from several threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self.echo: Callable[[str], None] | None = None
        self.verbose = False

    def record(self, severity: int, message: str) -> None:
        # severity: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose (ILogger.Severity)
        with self._lock:
            if severity <= 1:
                self._errors.append(message.strip())
            echo = self.echo
        # errors are not echoed: the failure message quotes the one that matters, on one line
        if echo is not None and (severity == 2 or (severity > 2 and self.verbose)):
            label = {0: "internal error", 1: "error", 2: "warning", 3: "info"}.get(severity, "verbose")
            echo(f"[TensorRT {label}] {message.strip()}")

    def take_errors(self) -> list[str]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def take_said(self) -> str:
        """The errors logged since the last take, as :func:`said_of` words them."""
        return said_of(self.take_errors())

    def last_error(self) -> str | None:
        with self._lock:
            return self._errors[-1] if self._errors else None


_LOG = TrtLog()
_TRT_LOGGER: Any = None
_LOGGER_LOCK = threading.Lock()


def get_logger(trt: ModuleType) -> tuple[Any, TrtLog]:
    """The process-wide ``trt.ILogger`` and the :class:`TrtLog` it writes to."""
    global _TRT_LOGGER
    with _LOGGER_LOCK:
        if _TRT_LOGGER is None:

            class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: Any, msg: str) -> None:
                    _LOG.record(int(severity), str(msg))

            _TRT_LOGGER = _Logger()
    return _TRT_LOGGER, _LOG


def make_progress_monitor(trt: ModuleType, *, stream: Any = None) -> Any:
    """A ``trt.IProgressMonitor`` that shows TensorRT's top-level build phases as tqdm bars on stderr.

    Nested phases are not drawn (their names and counts change between TensorRT
    versions). The callbacks may come from several builder threads.
    """
    from tqdm import tqdm

    out = stream if stream is not None else sys.stderr

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is not None:
                return
            with self._lock:
                self._bars[phase_name] = tqdm(total=num_steps, desc=f"TensorRT: {phase_name}", file=out, leave=False)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.n = step + 1
                    bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return _Monitor()

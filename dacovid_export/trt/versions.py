"""The import and version policy of TensorRT and TensorRT-RTX: the project's only imports of either library.

Everything else gets the module object from :func:`import_runtime`; the
version-dependent differences of the API this project uses (network creation
flags, TensorRT-RTX's engine validity, I/O tensor names) are answered here too.
See :mod:`dacovid_export.trt.library` for the policy itself.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from dacovid_export.core.errors import (
    MissingDependencyError,
    UserInputError,
    first_line,
)
from dacovid_export.core.versions import format_version, parse_version
from dacovid_export.trt.targets import RUNTIMES

__all__ = [
    "MIN_TRT_VERSION",
    "SUPPORTED_TRT_MAJORS",
    "TRT_INSTALL_HINT",
    "MIN_RTX_VERSION",
    "RTX_INSTALL_HINT",
    "RTX_PLATFORMS",
    "rtx_install_hint",
    "check_tensorrt_version",
    "import_tensorrt",
    "tensorrt_version",
    "installed_tensorrt_version",
    "import_tensorrt_rtx",
    "import_runtime",
    "runtime_of",
    "is_rtx",
    "install_hint",
    "engine_invalidity",
    "network_creation_flags",
    "engine_io_names",
]

MIN_TRT_VERSION: tuple[int, int] = (10, 8)
SUPPORTED_TRT_MAJORS: tuple[int, ...] = (10, 11)
TRT_INSTALL_HINT = "pip install 'dacovid-export[trt]' (TensorRT >= 10.8; needs an NVIDIA GPU and driver)"
# 1.1 added Runtime.get_engine_validity, which the load-time check relies on
MIN_RTX_VERSION: tuple[int, int] = (1, 1)
# (platform.system(), platform.machine()) pairs TensorRT-RTX ships wheels for: pyproject's marker on the dependency
RTX_PLATFORMS: tuple[tuple[str, str], ...] = (("Linux", "x86_64"), ("Windows", "AMD64"))


def rtx_install_hint(system: str | None = None, machine: str | None = None) -> str:
    """What to do without TensorRT-RTX: it is a base dependency, so reinstall, or (no wheel here) build elsewhere."""
    import platform

    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    if (system, machine) in RTX_PLATFORMS:
        return (
            "TensorRT-RTX >= 1.1 is a dependency of dacovid-export (it builds engines without a GPU; they run on RTX "
            "GPUs): reinstall with pip install -e . (or pip install -U 'tensorrt-rtx>=1.1')"
        )
    shipped = " and ".join(f"{s} {m}" for s, m in RTX_PLATFORMS)
    return (
        f"TensorRT-RTX has no wheel for {system} {machine} (it ships for {shipped}, where the base install has it): "
        "build the engines on such a machine, GPU or not, or with TensorRT on a GPU"
    )


RTX_INSTALL_HINT = rtx_install_hint()


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

    Raises :class:`MissingDependencyError` (one line: reinstall, as it is a base dependency, or why this platform
    has none) when it is missing, its libraries cannot be loaded, or it is too old.
    """
    # the project's single TensorRT-RTX import
    trt, version = _import_library("tensorrt_rtx", "TensorRT-RTX", "build TensorRT-RTX engines", RTX_INSTALL_HINT)
    if parse_version(version)[:2] < MIN_RTX_VERSION:
        raise MissingDependencyError(
            f"TensorRT-RTX {version} is installed but dacovid-export needs >= {format_version(MIN_RTX_VERSION)} "
            "(engine validity checks): pip install -U 'tensorrt-rtx>=1.1'"
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


def engine_io_names(trt: ModuleType, engine: Any) -> tuple[list[str], list[str]]:
    """An engine's input and output tensor names, in TensorRT's order."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    return inputs, outputs

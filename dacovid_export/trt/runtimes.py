"""Which runtime builds: ``--runtime auto|tensorrt|tensorrt-rtx`` resolved against what is installed and visible."""

from __future__ import annotations

from dacovid_export.core.errors import MissingDependencyError, UserInputError
from dacovid_export.trt.gpu import cuda_visible
from dacovid_export.trt.targets import RUNTIMES
from dacovid_export.trt.versions import (
    RTX_INSTALL_HINT,
    TRT_INSTALL_HINT,
    installed_tensorrt_version,
)

__all__ = ["RUNTIME_CHOICES", "installed_runtimes", "resolve_runtime"]

RUNTIME_CHOICES: tuple[str, ...] = ("auto", *RUNTIMES)


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

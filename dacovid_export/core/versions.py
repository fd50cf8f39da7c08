"""Versions of the packages an artifact was made with, read without importing heavy modules."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["package_version", "package_versions"]

_PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime-gpu", "onnxruntime", "nvidia-modelopt", "openvino", "tensorrt", "numpy")


def package_version(*names: str, default: str = "unknown") -> str:
    """Installed version of the first of ``names`` (distribution names) that is installed, else ``default``."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return default


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"dacovid-export": ..., "python": ..., "torch": ..., ...}`` for the installed packages."""
    from dacovid_export import __version__

    out = {"dacovid-export": __version__, "python": platform.python_version()}
    for name in _PACKAGES + extra:
        version = package_version(name, default="")
        if version:
            out[name] = version
    return out

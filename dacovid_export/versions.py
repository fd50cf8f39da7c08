"""Versions of the packages an artifact was made with, read without importing heavy modules."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["package_versions"]

_PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime-gpu", "onnxruntime", "nvidia-modelopt", "tensorrt", "numpy")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"dacovid-export": ..., "python": ..., "torch": ..., ...}`` for the installed packages."""
    from dacovid_export import __version__

    out = {"dacovid-export": __version__, "python": platform.python_version()}
    for name in _PACKAGES + extra:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out

"""Versions: this package's, those an artifact was made with (read without importing heavy modules), and version strings."""

from __future__ import annotations

import platform
from importlib import metadata

from dacovid_export.core.errors import UserInputError

__all__ = ["__version__", "format_version", "package_version", "package_versions", "parse_version"]

__version__ = "0.1.0"

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
    out = {"dacovid-export": __version__, "python": platform.python_version()}
    for name in _PACKAGES + extra:
        version = package_version(name, default="")
        if version:
            out[name] = version
    return out


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.8.0.43"`` -> ``(10, 8, 0, 43)``; :class:`UserInputError` for anything else.

    Pre-release tails (``"11.0.0rc1"``) keep their leading digits; at least
    ``major.minor`` is required.
    """
    parts: list[int] = []
    for piece in str(text).strip().split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    if len(parts) < 2:
        raise UserInputError(f"TensorRT version {text!r} is not of the form MAJOR.MINOR[.PATCH[.BUILD]]")
    return tuple(parts)


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)

"""Which optional runtimes this machine has, for skip conditions (`from tests.helpers.runtimes import ...`)."""

from __future__ import annotations

__all__ = ["tensorrt_importable"]


def tensorrt_importable() -> bool:
    """TensorRT or TensorRT-RTX is installed: the engine backend has a library to load engines with."""
    from dacovid_export.trt.library import installed_runtimes

    return bool(installed_runtimes())

"""Model Optimizer plumbing shared by the FP16 and INT8 steps: lazy import, quiet logs, versions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib import metadata

__all__ = ["CPU_PROVIDERS", "quiet_modelopt", "modelopt_version", "onnxruntime_version"]

# Model Optimizer's provider names: ONNX Runtime's CPU provider only. onnxruntime-gpu is
# installed, so without this it would try CUDA and TensorRT first on a GPU machine and
# calibrate with a different numeric path than on the CPU.
CPU_PROVIDERS = ("cpu",)

_LOGGERS = ("modelopt.onnx", "modelopt.onnx.autocast")


@contextlib.contextmanager
def quiet_modelopt(level: int = logging.WARNING) -> Iterator[None]:
    """Show only Model Optimizer's warnings and errors inside the block (it logs every node at INFO)."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, before):
            lg.setLevel(old)


def _version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def modelopt_version() -> str:
    return _version("nvidia-modelopt", "nvidia_modelopt")


def onnxruntime_version() -> str:
    return _version("onnxruntime-gpu", "onnxruntime")

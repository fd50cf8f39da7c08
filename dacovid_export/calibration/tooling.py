"""Model Optimizer plumbing shared by the FP16 and INT8 steps: lazy import, quiet logs, versions."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator

from dacovid_export.core.log import get_logger
from dacovid_export.core.versions import package_version

__all__ = ["CPU_PROVIDERS", "quiet_modelopt", "tool_output_filtered", "modelopt_version", "onnxruntime_version"]

_log = get_logger("calibration")

# Model Optimizer's provider names: ONNX Runtime's CPU provider only. onnxruntime-gpu is
# installed, so without this it would try CUDA and TensorRT first on a GPU machine and
# calibrate with a different numeric path than on the CPU.
CPU_PROVIDERS = ("cpu",)

_LOGGERS = ("modelopt.onnx", "modelopt.onnx.autocast")
# logged as errors by Model Optimizer but expected here: it probes NVML for GPUs even
# when calibrating with the CPU provider only
_BENIGN_MESSAGES = ("Failed to get GPU count",)


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


@contextlib.contextmanager
def tool_output_filtered() -> Iterator[None]:
    """Capture what Model Optimizer and ONNX Runtime print inside the block; pass on only their warnings.

    They log to stdout (a library's stdout belongs to the caller's CLI) and ONNX Runtime's
    calibrator prints a banner and a progress bar per image. Warnings and errors are
    repeated on stderr afterwards; on an exception the captured tail is shown in full.
    Progress bars created before the block keep writing to the real stderr.
    """
    captured = io.StringIO()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    handlers = [list(lg.handlers) for lg in loggers]
    # Model Optimizer's handler was bound to the real stdout at import time, so
    # redirect_stdout alone does not catch it: point the handlers at the buffer too.
    streams = [
        (h, h.setStream(captured)) for hs in handlers for h in hs if isinstance(h, logging.StreamHandler)
    ]
    try:
        with quiet_modelopt(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield
    except BaseException:
        sys.stderr.write(captured.getvalue()[-4000:])
        raise
    finally:
        # quantize() re-creates its log handler on the redirected stream; put the old ones back
        for lg, old in zip(loggers, handlers):
            lg.handlers[:] = old
        for handler, stream in streams:
            if stream is not None:
                handler.setStream(stream)
    for line in captured.getvalue().splitlines():
        if (" - WARNING - " in line or " - ERROR - " in line) and not any(b in line for b in _BENIGN_MESSAGES):
            _log.warning(line)


def _version(*names: str) -> str:
    return package_version(*names)


def modelopt_version() -> str:
    return _version("nvidia-modelopt", "nvidia_modelopt")


def onnxruntime_version() -> str:
    return _version("onnxruntime-gpu", "onnxruntime")

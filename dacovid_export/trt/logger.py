"""TensorRT's logger: one process-wide ``trt.ILogger`` whose errors become one-line failure messages.

While a caller wants them (``TrtLog.forwarding``, an engine build that says its steps), TensorRT's
warnings go to the ``dacovid_export.trt`` logger at INFO: they are TensorRT's notes on the build
(deprecations, tactics it skipped), not ours to raise, so ``-q`` silences them with the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from dacovid_export.core.errors import one_line
from dacovid_export.core.log import get_logger

__all__ = ["TrtLog", "said_of", "trt_logger"]

_log = get_logger("trt")


def said_of(errors: list[str]) -> str:
    """TensorRT's last error on one line, and how many came before it."""
    if not errors:
        return "TensorRT reported no error message"
    return "TensorRT said: " + one_line(errors[-1]) + (f" (and {len(errors) - 1} earlier error(s))" if len(errors) > 1 else "")


class TrtLog:
    """What TensorRT logged: errors kept for the one-line failure message (not logged), warnings forwarded.

    One instance per process (see :func:`trt_logger`): TensorRT's documentation
    asks that the logger outlive every builder and runtime made with it, and its
    callbacks may come from several threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._forward = 0  # callers inside forwarding(); nested builds each count once

    def record(self, severity: int, message: str) -> None:
        # severity: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose (ILogger.Severity)
        with self._lock:
            if severity <= 1:
                self._errors.append(message.strip())
            forward = self._forward > 0
        # errors are not logged: the failure message quotes the one that matters, on one line
        if forward and severity == 2:
            _log.info(f"[TensorRT warning] {message.strip()}")

    @contextmanager
    def forwarding(self, enabled: bool = True) -> Iterator[None]:
        """Within the block (when ``enabled``), TensorRT's warnings go to the ``dacovid_export.trt`` logger."""
        if not enabled:
            yield
            return
        with self._lock:
            self._forward += 1
        try:
            yield
        finally:
            with self._lock:
                self._forward -= 1

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


def trt_logger(trt: ModuleType) -> tuple[Any, TrtLog]:
    """The process-wide ``trt.ILogger`` and the :class:`TrtLog` it writes to."""
    global _TRT_LOGGER
    with _LOGGER_LOCK:
        if _TRT_LOGGER is None:
            # TensorRT's classes exist only once the runtime is imported (lazily): a base of type Any
            base: Any = trt.ILogger

            class _Logger(base):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: Any, msg: str) -> None:
                    _LOG.record(int(severity), str(msg))

            _TRT_LOGGER = _Logger()
    return _TRT_LOGGER, _LOG

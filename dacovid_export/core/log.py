"""The package's one logger family, ``dacovid_export.<stage>``, and the verbosity the CLI sets on it.

Library code says what it does through ``get_logger("<stage>")`` (never ``print``);
the CLI's ``-v``/``-q`` choose how much of it a user sees (:func:`set_verbosity`).
Messages go to stderr as bare lines, as the ``print(..., file=sys.stderr)`` calls
they replace did, so what users saw before still appears at the default verbosity.
The handler writes to ``sys.stderr`` as it is when a message is said (not as it
was at import), so Click's test runner and pytest's capture see it too; the
family does not propagate to the root logger, so an application that configures
logging sees each line once, through its own handlers if it removes ours.
A line said while tqdm bars are drawn clears them and redraws them below it, so
a training epoch's line and its bars do not overwrite each other.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ROOT_LOGGER", "get_logger", "info_if", "set_verbosity", "verbosity_level", "showing_progress"]

ROOT_LOGGER = "dacovid_export"


class _CurrentStderr(logging.Handler):
    """A handler that writes each message to whatever ``sys.stderr`` is at that moment, as one line."""

    terminator = "\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            stream = sys.stderr
            # tqdm only when something imported it: a bar may be on screen only then
            tqdm_module = sys.modules.get("tqdm")
            if tqdm_module is None:
                stream.write(line)
            else:
                with tqdm_module.tqdm.external_write_mode(file=stream):
                    stream.write(line)
            stream.flush()
        except RecursionError:  # as logging.StreamHandler: never swallow a recursion
            raise
        except Exception:
            self.handleError(record)


def _root() -> logging.Logger:
    root = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(h, _CurrentStderr) for h in root.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.propagate = False
        if root.level == logging.NOTSET:
            root.setLevel(logging.INFO)  # what users saw before the logger: every notice, no debug detail
    return root


def get_logger(stage: str) -> logging.Logger:
    """``logging.getLogger("dacovid_export.<stage>")``, with the family's stderr handler installed once."""
    _root()
    return logging.getLogger(f"{ROOT_LOGGER}.{stage}")


def info_if(logger: logging.Logger, message: str, enabled: bool) -> None:
    """``logger.info(message)`` when ``enabled``: a step called with ``progress=False`` says nothing."""
    if enabled:
        logger.info(message)


def verbosity_level(verbose: int = 0, quiet: int = 0) -> int:
    """The logging level of ``-v`` x ``verbose`` and ``-q`` x ``quiet``: INFO by default, DEBUG with -v, WARNING with -q, ERROR with -qq."""
    return min(max(logging.INFO - 10 * verbose + 10 * quiet, logging.DEBUG), logging.ERROR)


def set_verbosity(verbose: int = 0, quiet: int = 0) -> None:
    """Set the family's level from the CLI's ``-v``/``-q`` counts (see :func:`verbosity_level`)."""
    _root().setLevel(verbosity_level(verbose, quiet))


def showing_progress() -> bool:
    """Whether progress (bars, step lines) is wanted at the current verbosity: not under ``-q``."""
    return _root().isEnabledFor(logging.INFO)

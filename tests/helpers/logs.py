"""What the library said on its loggers, as a list of lines (the family does not propagate, so ``caplog`` misses it)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dacovid_export.core.log import ROOT_LOGGER, get_logger

__all__ = ["said_lines"]


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def said_lines(stage: str | None = None) -> Iterator[list[str]]:
    """Collect every line ``dacovid_export.<stage>`` (default: the whole family) says at the current level."""
    logger = get_logger(stage) if stage else logging.getLogger(ROOT_LOGGER)
    lines: list[str] = []
    handler = _Lines(lines)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)

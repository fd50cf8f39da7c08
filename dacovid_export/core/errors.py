"""Exceptions that carry a message meant for the user and a process exit code.

The CLI turns any :class:`DacovidError` into one line on stderr and its
``exit_code``; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

__all__ = [
    "DacovidError",
    "UserInputError",
    "OutputNotWritableError",
    "MissingDependencyError",
    "IncompatibleArtifactError",
    "CheckFailedError",
    "EngineBuildError",
    "first_line",
    "one_line",
]


class DacovidError(Exception):
    """Base class: an error with a message for the user."""

    exit_code: int = 2


class UserInputError(DacovidError, ValueError):
    """Bad option, missing or corrupt file, wrong shape: the user can fix it."""

    exit_code = 2


class OutputNotWritableError(UserInputError, OSError):
    """An output cannot be written (read-only folder or file system, disk full, ``/proc``).

    Also an :class:`OSError`, so code that treats a failed write as optional
    (e.g. a cache) keeps catching it as before.
    """

    exit_code = 2


class MissingDependencyError(DacovidError, ImportError):
    """An optional package (TensorRT, CUDA bindings, ...) or a GPU is not available."""

    exit_code = 2


class IncompatibleArtifactError(DacovidError):
    """An artifact made for another TensorRT version, GPU or project version."""

    exit_code = 2


class CheckFailedError(DacovidError):
    """A self-check of an export (graph pattern, operator support, numeric match) failed."""

    exit_code = 1


class EngineBuildError(DacovidError):
    """TensorRT could not parse or build the model (or TensorRT/GPU trouble found mid-build)."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (or its class name): errors here are one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return re.sub(r"\s+", " ", str(text)).strip()

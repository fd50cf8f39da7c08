"""One validator for the values a user gives: integers in a range, finite numbers, fractions, flags and paths.

Every option dataclass checks its ints, numbers and flags through these, so each error has one shape,
``{name}={value!r}: give ...``, quoting the bad value, followed by ``why`` (what the limit protects, or the
default) where the caller has one. ``bool`` is refused where a number is asked for: ``True`` is an ``int``
to Python but never a batch size to a user. The limits themselves live in :mod:`dacovid_export.core.limits`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TypeGuard

from dacovid_export.core.errors import UserInputError

__all__ = ["is_int", "is_number", "check_int", "check_number", "check_fraction", "check_bool", "as_path"]


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` that is not a ``bool`` (finite or not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value: object, lo: int, hi: int | None = None, *, why: str = "") -> int:
    """``value`` when it is an integer from ``lo`` to ``hi`` (``None``: no upper bound); else :class:`UserInputError`.

    The message is ``{name}={value!r}: give an integer from {lo} to {hi}`` (or ``>= {lo}``) plus ``why``.
    """
    if is_int(value) and value >= lo and (hi is None or value <= hi):
        return value
    bounds = f">= {lo}" if hi is None else f"from {lo} to {hi}"
    raise UserInputError(f"{name}={value!r}: give an integer {bounds}{why}")


def check_number(
    name: str, value: object, lo: float = 0.0, hi: float | None = None, *, above: bool = False, why: str = ""
) -> float:
    """``value`` as a float when it is a finite number >= ``lo`` (> ``lo`` with ``above``) and <= ``hi``.

    The message is ``{name}={value!r}: give a finite number > {lo}`` (or ``>=``, ``from lo to hi``) plus ``why``.
    """
    if is_number(value) and math.isfinite(value) and (value > lo if above else value >= lo) and (hi is None or value <= hi):
        return float(value)
    if hi is None:
        bounds = f"{'>' if above else '>='} {lo:g}"
    else:
        bounds = f"> {lo:g} and <= {hi:g}" if above else f"from {lo:g} to {hi:g}"
    raise UserInputError(f"{name}={value!r}: give a finite number {bounds}{why}")


def check_fraction(name: str, value: object, *, strict: bool = False, why: str = "") -> float:
    """``value`` as a float when it is a number from 0 to 1 (``strict``: neither 0 nor 1); else
    ``{name}={value!r}: give a fraction (strictly) between 0 and 1``."""
    if is_number(value) and (0.0 < value < 1.0 if strict else 0.0 <= value <= 1.0):
        return float(value)
    raise UserInputError(f"{name}={value!r}: give a fraction {'strictly ' if strict else ''}between 0 and 1{why}")


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is ``True`` or ``False`` (not 0/1, not a string); else ``{name}={value!r}: give True or False``."""
    if not isinstance(value, bool):
        raise UserInputError(f"{name}={value!r}: give True or False")
    return value


def as_path(value: str | os.PathLike[str] | None) -> Path | None:
    """``value`` as a :class:`Path` (``None`` stays ``None``): what an option dataclass stores for a path given as text."""
    return None if value is None else Path(value)

"""The one guarded ``torch.load`` (weights only, on the CPU), and what it raises on a file that is not what it should be."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any

__all__ = ["LOAD_ERRORS", "load_tensors", "why_load_failed"]

# What torch.load(weights_only=True) raises on files that are not checkpoints: truncated
# zips, random bytes (IndexError from the unpickler), foreign pickles, text files.
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    EOFError,
    ValueError,
    OSError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
    struct.error,
)


def load_tensors(path: str | os.PathLike[str], fail: Callable[[BaseException], Exception]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: never runs the file's code.

    Any of :data:`LOAD_ERRORS` becomes ``fail(exc)``, raised from it: the caller words the error.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise fail(exc) from exc


def why_load_failed(exc: BaseException) -> str:
    """Why a safe load failed, in words for an error line (never torch's advice to load unsafely)."""
    # torch's own message advises weights_only=False, which would run the file's code: never pass that on
    text = str(exc)
    lowered = " ".join(text.lower().split())
    # torch words this differently by version and pickle kind ("Unsupported global: GLOBAL x",
    # "unsupported GLOBAL x whose module x is blocked", "not an allowed global"): match the word, not the phrase
    if "global" in lowered and ("unsupported" in lowered or "not an allowed" in lowered or "blocked" in lowered):
        return "it holds Python objects besides tensors, which a safe load refuses; it may run code: never load it unsafely"
    if "unsupported operand" in lowered:
        return "not a torch file, or damaged"
    if isinstance(exc, (zipfile.BadZipFile, EOFError)) or "zip archive" in text:
        return "not a torch file or truncated"
    return f"torch.load could not read it: {type(exc).__name__}"

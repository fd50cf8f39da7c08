"""The one guarded ``torch.load`` (weights only, on the CPU), and what it raises on a file that is not what it should be."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any

__all__ = ["LOAD_ERRORS", "load_tensors"]

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

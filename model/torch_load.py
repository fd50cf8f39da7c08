"""What ``torch.load`` raises on a file that is not what it should be: one list for checkpoints and backbone weights."""

from __future__ import annotations

import pickle
import struct
import zipfile

__all__ = ["LOAD_ERRORS"]

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

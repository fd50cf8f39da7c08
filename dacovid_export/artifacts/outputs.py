"""Outputs never destroy inputs: an artifact's companion files, and the check every command runs first.

:func:`check_outputs` refuses, before any long work, an output that is one of the
command's inputs (same path, or the same file under another name: a hard link,
a symlink, ``./x`` vs ``x``) or one of their companion files (an engine's JSON
sidecar, an ONNX model's external data), and an output whose folder cannot be
written (read-only folder or file system, ``/proc``), naming the path and why.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dacovid_export.artifacts.engine_metadata import sidecar_path
from dacovid_export.artifacts.info import artifact_kind
from dacovid_export.artifacts.onnx_graph import external_data_locations
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import (
    PathLike,
    nearest_existing,
    probe_writable,
    same_file,
)

__all__ = ["check_outputs", "companion_files"]


def companion_files(path: PathLike) -> list[Path]:
    """``path`` and the files that belong to it: an engine's JSON sidecar, an ONNX model's external data."""
    path = Path(path)
    out = [path]
    try:
        kind = artifact_kind(path)
    except UserInputError:
        kind = None  # a folder or another file: no companions
    if kind == "engine":
        out.append(sidecar_path(path))
    elif kind == "onnx" and path.is_file():
        from google.protobuf.message import Error as ProtobufError

        try:
            out.extend(path.parent / loc for loc in external_data_locations(path))
        except (ProtobufError, OSError, ValueError, RuntimeError):
            pass  # a damaged input is reported by its reader, in its own words
    return out


def check_outputs(
    *,
    inputs: Iterable[PathLike | None] = (),
    files: Mapping[str, PathLike | None] | None = None,
    folders: Mapping[str, PathLike | None] | None = None,
) -> None:
    """Refuse, in one :class:`UserInputError` line, outputs that would destroy an input or cannot be written.

    ``files``/``folders``: option name (for the message) -> output path (``None``: not given).
    ``inputs``: every file and folder the command reads; each file's
    :func:`companion_files` are protected too. Creates nothing.
    """
    protected: list[Path] = []
    for item in inputs:
        if item is not None and Path(item).exists():
            protected.extend(p for p in companion_files(item) if p.exists())
    named = [(label, Path(out)) for label, out in (files or {}).items() if out is not None]
    for i, (label, out) in enumerate(named):
        for other_label, other in named[:i]:
            if os.path.abspath(out) == os.path.abspath(other) or (out.exists() and same_file(out, other)):
                raise UserInputError(f"{other_label} and {label} name the same file {str(out)!r}: give each output its own path")
    for label, out in named:
        for source in protected:
            if out.exists() and same_file(out, source):
                alias = "" if str(source) == str(out) else f" ({str(source)!r})"
                raise UserInputError(
                    f"{label} {str(out)!r} is an input of this command{alias}; writing it would destroy "
                    "that input: choose another output path"
                )
        if out.is_dir():
            raise UserInputError(f"{label} {str(out)!r} is a folder; give a file name")
        probe_writable(nearest_existing(out.parent), out, label)
    for label, out in (folders or {}).items():
        if out is None:
            continue
        out = Path(out)
        if out.exists() and not out.is_dir():
            for source in protected:
                if same_file(out, source):
                    raise UserInputError(f"{label} {str(out)!r} is an input of this command; give a folder for the outputs")
            raise UserInputError(f"{label} {str(out)!r} exists and is not a folder")
        probe_writable(nearest_existing(out), out, label)

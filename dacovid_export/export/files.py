"""ONNX files the export and the precision step write: output checks, one self-contained file, atomic publication."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import atomic_path

if TYPE_CHECKING:
    import onnx

__all__ = ["check_onnx_output", "save_onnx", "publish"]

_TWO_GB = 2**31


def check_onnx_output(
    output: str | os.PathLike[str],
    *,
    inputs: Sequence[str | os.PathLike[str] | None],
    folders: Mapping[str, str | os.PathLike[str] | None] | None = None,
) -> Path:
    """Before any work: the output's name, and that it destroys no input and can be written."""
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise UserInputError(f"output {str(output)!r} must end in .onnx (tools pick the artifact type by suffix)")
    if output.is_dir():
        raise UserInputError(f"output {str(output)!r} is a directory; give a file name ending in .onnx")
    check_outputs(inputs=list(inputs), files={"output": output}, folders=folders)
    return output


def save_onnx(proto: "onnx.ModelProto", path: Path) -> None:
    """One self-contained file: every tensor embedded (the dynamo exporter defaults to external data)."""
    import onnx

    size = proto.ByteSize()
    if size >= _TWO_GB:
        raise CheckFailedError(
            f"the model is {size / 2**30:.2f} GiB; protobuf cannot embed more than 2 GiB in one .onnx file. "
            "Use a smaller model configuration"
        )
    onnx.save(proto, str(path), save_as_external_data=False)


def publish(built: Path, output: Path) -> None:
    """Move a checked file from its scratch folder onto ``output`` atomically."""
    with atomic_path(output) as tmp:
        shutil.move(str(built), str(tmp))

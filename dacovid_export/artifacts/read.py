"""Read any artifact's self-description: the reader is picked by the file's kind."""

from __future__ import annotations

import os
from pathlib import Path

from dacovid_export.artifacts.engine_metadata import read_engine_info
from dacovid_export.artifacts.info import ArtifactInfo, artifact_kind
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import sha256_file
from dacovid_export.data.preprocessing import Preprocessing

__all__ = ["read_artifact_info"]


def read_artifact_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    """Metadata of any artifact, without loading weights into a runtime where avoidable."""
    kind = artifact_kind(path)
    if not Path(path).is_file():
        raise UserInputError(f"{kind} {str(path)!r} does not exist or is not a file")
    if kind == "checkpoint":
        return _checkpoint_info(path)
    if kind == "onnx":
        return read_onnx_info(path)
    return read_engine_info(path)


def _checkpoint_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    from dacovid_export.model.checkpoint import (
        read_checkpoint,  # imports torch: only when a checkpoint is read
    )

    payload = read_checkpoint(path)
    digest = sha256_file(path)
    return ArtifactInfo(
        path=str(path),
        kind="checkpoint",
        class_names=tuple(payload["class_names"]),
        preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
        precision="fp32",
        source_sha256=digest,
        versions=payload.get("versions", {}),
        extra={"model_config": payload.get("model_config", {}), "epoch": payload.get("epoch", 0)},
    )

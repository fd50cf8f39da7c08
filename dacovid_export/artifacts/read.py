"""Read any artifact's self-description: the reader is picked by the file's kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dacovid_export.artifacts.engine_metadata import read_engine_info
from dacovid_export.artifacts.info import ArtifactInfo, artifact_kind
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.core.errors import UserInputError

if TYPE_CHECKING:
    from dacovid_export.model.checkpoint import CheckpointMetadata

__all__ = ["checkpoint_info", "read_artifact_info"]


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
    from dacovid_export.model.checkpoint import (  # imports torch: only when a checkpoint is read
        CheckpointMetadata,
        read_checkpoint,
    )

    return checkpoint_info(CheckpointMetadata.from_payload(read_checkpoint(path), path))


def checkpoint_info(meta: CheckpointMetadata) -> ArtifactInfo:
    """What a checkpoint says about itself, as every artifact says it."""
    return ArtifactInfo(
        path=meta.path,
        kind="checkpoint",
        class_names=meta.class_names,
        preprocessing=meta.preprocessing,
        precision="fp32",
        source_sha256=meta.sha256,
        versions=meta.versions,
        extra={"model_config": meta.model_config.to_dict(), "epoch": meta.epoch},
    )

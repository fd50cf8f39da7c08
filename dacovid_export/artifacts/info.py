"""What every artifact says about itself: classes, preprocessing, precision, source checksum, versions.

One reader per artifact kind, picked by file suffix:
checkpoint (``.pt``/``.pth``), ONNX model (``.onnx``, ``metadata_props``),
TensorRT engine (``.engine``/``.plan``, JSON sidecar ``<engine>.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import Preprocessing

__all__ = ["Precision", "PRECISIONS", "ArtifactKind", "ArtifactInfo", "artifact_kind", "read_artifact_info"]

# the numeric precisions an artifact can hold: the FP32 export and the two the precision step makes
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

ArtifactKind = Literal["checkpoint", "onnx", "engine"]

_SUFFIXES: dict[str, ArtifactKind] = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".ckpt": "checkpoint",
    ".onnx": "onnx",
    ".engine": "engine",
    ".plan": "engine",
    ".trt": "engine",
}


@dataclasses.dataclass(frozen=True)
class ArtifactInfo:
    """Self-description of a checkpoint, ONNX model or engine."""

    path: str
    kind: ArtifactKind
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    precision: Precision
    source_sha256: str  # checkpoint's sha256 (for a checkpoint: its own)
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    input_name: str = "input"
    output_name: str = "logits"
    # batch range the artifact accepts; None = unbounded (checkpoint, dynamic ONNX)
    min_batch: int = 1
    max_batch: int | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["preprocessing"] = self.preprocessing.to_dict()
        out["class_names"] = list(self.class_names)
        out["versions"] = dict(self.versions)
        out["extra"] = dict(self.extra)
        return out


def artifact_kind(path: str | os.PathLike[str]) -> ArtifactKind:
    from dacovid_export.core.fileio import refuse_scratch

    refuse_scratch(path)
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise UserInputError(
            f"{str(path)!r}: unknown artifact type {suffix or '(no suffix)'!r}; expected a checkpoint "
            "(.pt/.pth), an ONNX model (.onnx) or a TensorRT engine (.engine/.plan)"
        )
    return _SUFFIXES[suffix]


def read_artifact_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    """Metadata of any artifact, without loading weights into a runtime where avoidable."""
    kind = artifact_kind(path)
    if not Path(path).is_file():
        raise UserInputError(f"{kind} {str(path)!r} does not exist or is not a file")
    if kind == "checkpoint":
        return _checkpoint_info(path)
    if kind == "onnx":
        from dacovid_export.artifacts.onnx_metadata import read_onnx_info

        return read_onnx_info(path)
    from dacovid_export.artifacts.engine_metadata import read_engine_info

    return read_engine_info(path)


def _checkpoint_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    from dacovid_export.core.fileio import sha256_file
    from dacovid_export.model.checkpoint import read_checkpoint

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

"""What every artifact says about itself: classes, preprocessing, precision, source checksum, versions.

:class:`ArtifactInfo` is what every reader returns; :func:`artifact_kind` tells the
kind from the file suffix. The readers live beside it (``onnx_metadata``,
``engine_metadata``), and :mod:`dacovid_export.artifacts.read` picks one per file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import refuse_scratch
from dacovid_export.data.preprocessing import Preprocessing

__all__ = [
    "Precision",
    "ArtifactKind",
    "ArtifactInfo",
    "ENGINE_SUFFIXES",
    "artifact_kind",
]

# the numeric precision an artifact holds, by name ("fp32", "fp16", "int8", "bf16"): the precisions themselves, what
# each needs and how each is judged, are registered one class each in the precision stage (calibration.precisions);
# the stages below it read and write the name only
Precision = str


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
# the file endings of a serialized engine, in the order error messages list them
ENGINE_SUFFIXES: tuple[str, ...] = tuple(s for s, kind in _SUFFIXES.items() if kind == "engine")


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
    refuse_scratch(path)
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise UserInputError(
            f"{str(path)!r}: unknown artifact type {suffix or '(no suffix)'!r}; expected a checkpoint "
            "(.pt/.pth), an ONNX model (.onnx) or a TensorRT engine (.engine/.plan)"
        )
    return _SUFFIXES[suffix]

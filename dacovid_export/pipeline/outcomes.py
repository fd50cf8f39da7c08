"""What each pipeline step leaves behind: an artifact it wrote, or why it was skipped or failed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dacovid_export.core.errors import DacovidError
from dacovid_export.core.fileio import sha256_file

__all__ = ["ArtifactEntry", "SkippedStep", "FailedStep"]


@dataclasses.dataclass(frozen=True)
class ArtifactEntry:
    """A file the pipeline wrote (or started from), with its size and checksum."""

    role: str  # "checkpoint", "onnx fp16", "engine int8", ...
    path: str
    precision: str
    size_bytes: int
    sha256: str

    @classmethod
    def of(cls, role: str, path: Path, precision: str) -> "ArtifactEntry":
        return cls(role, str(path), precision, path.stat().st_size, sha256_file(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SkippedStep:
    """A step that cannot run here (no TensorRT, no GPU, no calibration images), and why."""

    step: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FailedStep:
    """A step that ran and failed its own check; the pipeline went on and its verdict is FAIL."""

    step: str
    reason: str
    error: str  # the exception's class name

    @classmethod
    def of(cls, step: str, exc: DacovidError) -> "FailedStep":
        return cls(step, str(exc), type(exc).__name__)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

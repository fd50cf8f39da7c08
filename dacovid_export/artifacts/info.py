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
from typing import Any, Literal, get_args

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import refuse_scratch
from dacovid_export.data.preprocessing import Preprocessing

__all__ = [
    "Precision",
    "PRECISIONS",
    "PrecisionSpec",
    "PRECISION_SPECS",
    "ENGINE_PRECISIONS",
    "ArtifactKind",
    "ArtifactInfo",
    "ENGINE_SUFFIXES",
    "artifact_kind",
]

# the numeric precisions an artifact can hold: the FP32 export and the three the precision step makes
# (bf16: an FP32 graph that passed the BF16 accuracy guard, marked for BF16 execution by OpenVINO on the CPU)
Precision = Literal["fp32", "fp16", "int8", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)


@dataclasses.dataclass(frozen=True)
class PrecisionSpec:
    """What the tool knows about one precision; the one table of them is :data:`PRECISION_SPECS`.

    A new precision is a name in :data:`Precision`, an entry here, and its step in
    ``calibration/convert.py`` (``PRECISION_STEPS``, checked against this table by the tests).
    ``atol``/``rtol``: the default numeric self-check of the written model (allowed max
    |diff| = atol + rtol * max|reference logit|). ``made_by_step``: the precision step makes it
    from the FP32 ONNX (fp32 is the export itself). ``guard``: the accuracy guard's name in
    messages (``None``: no guard). ``needs_images``: the step refuses to run without images
    (calibration or validation). ``engine``: ``trt --<name>`` builds an engine of it.
    ``checked_with``: the runtime the step's self-check runs the written model with.
    ``logits_gate``: the self-check's logit tolerance refuses the model; ``False``: the guard's
    agreement is the one gate and the logit difference is reported only.
    """

    name: Precision
    atol: float
    rtol: float
    made_by_step: bool
    guard: str | None
    needs_images: bool
    engine: bool
    checked_with: str = "onnxruntime"
    logits_gate: bool = True


PRECISION_SPECS: Mapping[str, PrecisionSpec] = {
    spec.name: spec
    for spec in (
        # FP32: ORT vs PyTorch differ by reordered float sums only (8e-5 on logits of ~30 measured)
        PrecisionSpec("fp32", 1e-4, 1e-3, made_by_step=False, guard=None, needs_images=False, engine=True),
        # FP16/INT8: against the FP32 ONNX model; loose enough for honest rounding, tight enough to catch an
        # attention overflow (which changed logits by ~70% of their scale, docs/design.md section 4)
        PrecisionSpec("fp16", 1e-3, 5e-2, made_by_step=True, guard="FP16", needs_images=False, engine=True),
        PrecisionSpec(
            "int8", 1e-2, 2.5e-1, made_by_step=True, guard="INT8", needs_images=True, engine=True, logits_gate=False
        ),
        # BF16 (OpenVINO, an FP32 graph run with 8-bit mantissas) against ONNX Runtime FP32: as loose as INT8 since
        # the rounding reaches the attention's energies; like INT8 the guard's agreement decides, the logits are
        # reported. A BF16-marked model is made for OpenVINO on a CPU: no engine.
        PrecisionSpec(
            "bf16", 1e-2, 2.5e-1, made_by_step=True, guard="BF16", needs_images=True, engine=False,
            checked_with="openvino", logits_gate=False,
        ),
    )
}
# the precisions an engine can have, in trt's flag order (a BF16-marked ONNX model is made for OpenVINO on a CPU)
ENGINE_PRECISIONS: tuple[Precision, ...] = tuple(p for p in PRECISIONS if PRECISION_SPECS[p].engine)

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

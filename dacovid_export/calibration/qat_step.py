"""``onnx --precision int8 --qat``: the fine-tune in front of the INT8 step, its reuse, and the commands that name it.

:func:`prepare_qat` calibrates, fine-tunes the checkpoint with fake quantization (distilled to
itself, :mod:`calibration.qat`), or reuses the fine-tuned checkpoint of an earlier run with the same
inputs, and exports it; the INT8 step then quantizes that export and the guard judges it against
the ORIGINAL checkpoint's FP32 model. :func:`qat_command` / :func:`convert_hint` are what a refusal
of a calibrated model tells the user to run next.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.onnx_metadata import (
    load_onnx,
    metadata_of,
    read_onnx_info,
)
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.data import (
    MAX_QAT_IMAGES,
    CalibrationSet,
    image_labels,
    load_calibration_set,
)
from dacovid_export.calibration.guard import calibrated_agreement
from dacovid_export.calibration.qat_record import QatRecord
from dacovid_export.calibration.step_images import image_sets, model_record
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import sha256_file
from dacovid_export.core.log import get_logger
from dacovid_export.export.config import OnnxExportConfig
from dacovid_export.export.onnx_export import export_onnx

__all__ = ["QatStep", "qat_checkpoint_path", "prepare_qat", "qat_command", "convert_hint"]

_log = get_logger("calibration")


def qat_checkpoint_path(output: str | os.PathLike[str]) -> Path:
    """Where ``--qat`` keeps the fine-tuned checkpoint of ``output`` (``m8.onnx`` -> ``m8.qat.pt``)."""
    output = Path(output)
    return output.with_name(output.stem + ".qat.pt")


@dataclasses.dataclass(frozen=True)
class QatStep:
    """What the INT8 step needs after the fine-tune: its FP32 export, its record, and the guard's image sets."""

    tuned_fp32: Path
    record: QatRecord
    calibration: CalibrationSet
    validation: CalibrationSet


def prepare_qat(
    checkpoint: str | os.PathLike[str],
    original_fp32: Path,
    output: Path,
    export: OnnxExportConfig,
    config: PrecisionConfig,
    train_data: Path,
    scratch: Path,
    progress: bool,
) -> QatStep:
    """Calibrate, fine-tune (or reuse the fine-tune of an earlier run), export the fine-tuned checkpoint."""
    info = read_onnx_info(original_fp32)
    calibration, validation = image_sets(
        config, info.preprocessing, model_record(metadata_of(load_onnx(original_fp32)), original_fp32, config)
    )
    if calibration is None:
        raise UserInputError("--qat needs calibration images: pass --calib-data DIR")
    train = load_calibration_set(train_data, info.preprocessing, size=MAX_QAT_IMAGES, seed=config.seed)
    keep = _training_rows(train, validation, train_data)
    qat_path = qat_checkpoint_path(output)
    check_outputs(inputs=[checkpoint, config.calib_data, config.validation_data, train_data], files={"--qat checkpoint": qat_path})
    source_sha = sha256_file(checkpoint)
    fine_tune = _reused(qat_path, config, source_sha, len(keep))
    if fine_tune is None:
        fine_tune = _fine_tune(checkpoint, qat_path, train, keep, calibration, config, train_data, progress)
    record = QatRecord.from_dict({
        **fine_tune,
        "source_sha256": source_sha,
        "qat_checkpoint_sha256": sha256_file(qat_path),
        # what post-training INT8 alone gives on the same images: the report's "before" of the fine-tune
        "before_qat": calibrated_agreement(
            original_fp32, calibration=calibration, validation=validation, method=config.guard_config().methods[0],
            cache_dir=config.cache_dir, labels=image_labels(validation, info.class_names),
        ).to_dict(),
    })
    tuned = export_onnx(qat_path, scratch / "model.qat.fp32.onnx", export, progress=progress)
    return QatStep(tuned.path, record, calibration, validation)


def _training_rows(train: CalibrationSet, validation: CalibrationSet, train_data: Path) -> list[int]:
    """The fine-tune's images: never one the guard judges on."""
    held = set(validation.image_sha256)
    keep = [i for i, digest in enumerate(train.image_sha256) if digest not in held] if held else list(range(len(train)))
    if len(keep) < 1:
        raise UserInputError(
            f"every training image in {str(train_data)!r} is a validation image: the fine-tune would see what the guard "
            "judges on; give other --train-data or --validation-data"
        )
    if len(keep) < len(train):
        _log.info(
            f"qat: {len(train) - len(keep)} training image(s) are the guard's validation images and are left out of the "
            f"fine-tune ({len(keep)} used)"
        )
    return keep


def _reused(qat_path: Path, config: PrecisionConfig, source_sha: str, images: int) -> dict[str, object] | None:
    """The record of an earlier fine-tune of the same checkpoint, options and image count (``None``: none to reuse)."""
    from dacovid_export.model.checkpoint import read_checkpoint

    if not qat_path.is_file():
        return None
    previous = read_checkpoint(qat_path).get("training", {}).get("qat", {})
    same = previous.get("source_sha256") == source_sha and all(
        previous.get(k) == v for k, v in config.qat_config().to_dict().items()
    ) and previous.get("train_images") == images
    if not same:
        return None
    _log.info(f"qat: reusing the fine-tuned checkpoint {qat_path} (same checkpoint, options and image count)")
    return {"method": "qat", "checkpoint": str(qat_path), "reused": True, **previous}


def _fine_tune(
    checkpoint: str | os.PathLike[str], qat_path: Path, train: CalibrationSet, keep: list[int],
    calibration: CalibrationSet, config: PrecisionConfig, train_data: Path, progress: bool,
) -> dict[str, object]:
    from dacovid_export.calibration.qat import qat_finetune

    result = qat_finetune(
        checkpoint,
        qat_path,
        train_images=train.array[keep],
        calibration_images=calibration.array,
        config=config.qat_config(),
        resume=True,
        progress=progress,
        extra_record={"train_images": len(keep), "train_data": str(train_data)},
    )
    return result.to_dict() | {"train_images": len(keep), "train_data": str(train_data), "reused": False}


def qat_command(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], config: PrecisionConfig) -> str | None:
    """The user's own INT8 command with ``--qat`` added: what a refusal of the calibrated model says to run next."""
    if not config.kind.quantization_aware or config.qat:
        return None

    def q(value: object) -> str:
        return shlex.quote(str(value))

    words = ["dacovid-export onnx", q(checkpoint), "-o", q(output), "--precision int8", "--calib-data", q(config.calib_data)]
    options = {"calib_size": "--calib-size", "validation_data": "--validation-data", "min_agreement": "--min-agreement",
               "calib_method": "--calib-method", "cache_dir": "--cache-dir", "seed": "--seed"}
    for name in config.given():
        if name in options:
            words += [options[name], q(getattr(config, name))]
    return "`" + " ".join([*words, "--qat"]) + "`" + (
        "" if (Path(checkpoint).parent / "split.json").is_file()
        else f" --train-data DIR (no split.json beside {Path(checkpoint).name}: the images it was trained on)"
    )


def convert_hint(info: ArtifactInfo) -> str:
    """From an FP32 ONNX model there are no weights to fine-tune: the checkpoint it was exported from is needed."""
    source = info.extra.get("source_name")
    named = f"{source!r}, recorded in this model's metadata" if source else "the checkpoint this model was exported from"
    return (
        f"it fine-tunes a checkpoint, not an ONNX model: run `dacovid-export onnx CHECKPOINT -o OUT --precision int8 "
        f"--calib-data DATA --qat` with CHECKPOINT the PyTorch checkpoint {named}"
    )

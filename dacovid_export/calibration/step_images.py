"""The precision step's images: calibration and validation sets, never sharing an image, never a training image.

Which images trained the checkpoint comes from the record it (or its FP32 export) carries and/or
``--training-data`` (:mod:`dacovid_export.data.evidence`); everything here is checked before any work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dacovid_export.artifacts.onnx_metadata import image_record_in
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.data import (
    MAX_VALIDATION_IMAGES,
    CalibrationSet,
    check_image_sets,
    load_calibration_set,
    load_validation_set,
    split_calibration_set,
)
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.evidence import resolve_record
from dacovid_export.data.fingerprint import ImageRecord
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.export.files import check_onnx_output

__all__ = ["checkpoint_record", "model_record", "check_step_inputs", "image_sets"]


def checkpoint_record(checkpoint: str | os.PathLike[str], config: PrecisionConfig) -> ImageRecord | None:
    """The training images to keep out of validation: the checkpoint's own record and/or ``--training-data``."""
    from dacovid_export.model.checkpoint import image_record_of, read_checkpoint

    carried = image_record_of(read_checkpoint(checkpoint), checkpoint) if config.calib_data or config.validation_data else None
    return resolve_record(carried, config.training_data)


def model_record(meta: Mapping[str, str], path: str | os.PathLike[str], config: PrecisionConfig) -> ImageRecord | None:
    """As :func:`checkpoint_record`, from the record an exported FP32 model carries."""
    return resolve_record(image_record_in(meta, str(path)), config.training_data)


def check_step_inputs(
    output: str | os.PathLike[str], source: str | os.PathLike[str], config: PrecisionConfig, *, images: bool = True,
    record: ImageRecord | None = None,
) -> Path:
    """Before any work: the output, that it destroys no input, and (``images``) the images the step will use."""
    output = check_onnx_output(
        output, inputs=[source, config.calib_data, config.validation_data, config.training_data],
        folders={"--cache-dir": config.cache_dir},
    )
    if config.calib_data is not None and images:
        # too few, shared between calibration and validation, or unreadable: found now, not after minutes of work
        # (the INT8 guard without --validation-data holds out part of --calib-data: that must leave enough on both sides)
        check_image_sets(
            config.calib_data,
            size=config.effective_calib_size,
            seed=config.seed,
            validation_data=config.validation_data,
            split=config.validation_data is None and config.kind.guard is not None,
            record=record,
        )
    return output


def image_sets(config: PrecisionConfig, preprocessing: Preprocessing, record: ImageRecord | None
) -> tuple[CalibrationSet | None, CalibrationSet]:
    """Calibration and validation images of the step; never the same image in both, never a training image in validation.

    ``record``: the checkpoint's training images (None: unknown, and the guard's report says so).
    Without ``calib_data`` (FP16/BF16 with ``validation_data`` only) there are no calibration images.
    """
    if config.validation_data is not None:
        validation = load_validation_set(
            config.validation_data, preprocessing, size=MAX_VALIDATION_IMAGES, seed=config.seed, record=record
        )
        if config.calib_data is None:
            return None, validation
        calibration = load_calibration_set(
            config.calib_data, preprocessing, size=config.effective_calib_size, seed=config.seed
        )
        return calibration, validation
    if config.calib_data is None:
        raise UserInputError(f"precision {config.precision!r} needs images: pass --calib-data DIR or --validation-data DIR")
    return split_calibration_set(
        config.calib_data, preprocessing, size=config.effective_calib_size, seed=config.seed, record=record
    )

"""The pipeline's inputs: checked before any work, then the checkpoint and the images for calibration and parity."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.calibration.config import DEFAULT_CALIB_SIZE
from dacovid_export.calibration.data import check_image_sets
from dacovid_export.core.progress import StepTimer
from dacovid_export.data.image_folder import labelled_images, match_folders_to_classes
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.data.synthetic import make_synthetic_dataset
from dacovid_export.pipeline.config import PipelineConfig
from dacovid_export.pipeline.embedded import (
    EMBEDDED_IMAGE_SIZE,
    EMBEDDED_IMAGES_PER_CLASS,
    make_embedded_checkpoint,
)

__all__ = ["PipelineInputs", "check_inputs", "prepare_inputs"]


@dataclasses.dataclass(frozen=True)
class PipelineInputs:
    """The checkpoint, parity and calibration images a run uses, and how the parity inputs are described."""

    checkpoint: Path
    images: Path | None
    calib_data: Path | None
    calib_size: int | None
    note: str  # "24 synthetic images", "the images in ..."


def check_inputs(config: PipelineConfig) -> None:
    """Everything about the inputs and ``--out`` that can be said in a second, before minutes of export."""
    # writable, and no input in its place, before minutes of work; the folder itself appears with the first file
    check_outputs(
        inputs=[config.checkpoint, config.images, config.calib_data, config.train_data, config.training_data],
        folders={"--out": config.out},
    )
    # empty or too small image sets are said now, not after minutes of export
    if config.images is not None:
        labelled_images(config.images, part="val")
    if config.calib_data is not None:
        # the images FP16 (a sample) and INT8 (a held-out validation part, calibration from the rest) will take:
        # too few, or unreadable, is said now
        size = config.calib_size or DEFAULT_CALIB_SIZE
        record = None
        if config.checkpoint is not None:  # not the embedded default
            from dacovid_export.data.evidence import resolve_record
            from dacovid_export.model.checkpoint import image_record_of, read_checkpoint

            # the guards keep the checkpoint's training images out of validation: too few unseen ones is said now
            carried = image_record_of(read_checkpoint(config.checkpoint), config.checkpoint)
            record = resolve_record(carried, config.training_data)
        for split in (False, True):
            check_image_sets(config.calib_data, size=size, seed=config.seed, split=split, record=record)


def prepare_inputs(config: PipelineConfig, timer: StepTimer) -> PipelineInputs:
    """The checkpoint (the embedded default is written to ``out``) and the images (synthetic ones when none given)."""

    out = config.out
    if config.embedded:
        size = config.image_size or EMBEDDED_IMAGE_SIZE
        checkpoint = out / "embedded-default.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_embedded_checkpoint(checkpoint, image_size=size, model_options=config.model_options, seed=config.seed)
        timer.note(f"embedded default: {checkpoint} (seeded random weights, {size}x{size})")
    else:
        checkpoint = config.checkpoint  # type: ignore[assignment]
        info = read_artifact_info(checkpoint)
        size = info.image_size
        if config.images is not None:
            # a folder that cannot be matched to the classes would stop parity after minutes of export: say it now
            match_folders_to_classes(list(labelled_images(config.images, part="val")), info.class_names)
    images = config.images
    calib_data = config.calib_data
    calib_size = config.calib_size
    if images is None:
        # draw at the resize size so preprocessing crops exactly as it does for real images
        folder = out / "synthetic-images"
        make_synthetic_dataset(
            folder,
            per_class=EMBEDDED_IMAGES_PER_CLASS,
            size=Preprocessing(image_size=size).effective_resize_size,
            seed=config.seed,
        )
        images = folder
        timer.note(f"synthetic images: {folder} ({3 * EMBEDDED_IMAGES_PER_CLASS})")
        if config.embedded and calib_data is None:
            calib_data = folder
            if calib_size is None:
                calib_size = 3 * EMBEDDED_IMAGES_PER_CLASS
        note = f"{3 * EMBEDDED_IMAGES_PER_CLASS} synthetic images"
    else:
        note = f"the images in {images}"
    return PipelineInputs(checkpoint, images, calib_data, calib_size, note)

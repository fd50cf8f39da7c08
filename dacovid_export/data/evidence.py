"""Which images may stand as evidence: the unseen ones, told apart from training images by content.

A trained model answers its own training images far from its decision boundaries, so an
agreement measured there overstates agreement on new patients. The guards (FP16, INT8, BF16,
QAT's figures) and ``check`` therefore judge only on images that did not train the checkpoint,
and ``check`` also sets aside the images a guard chose its model on. Three sets, kept apart:
training images, a guard's validation images, the images of the final verdict.

Who knows the training images (:func:`resolve_record`), first to last:

1. ``--training-data DIR|split.json`` (a checkpoint trained elsewhere or before the record);
   every image of DIR, or a split.json's training part (its recorded fingerprints when it has
   them) are training images, its held-out part the held-out ones;
2. the record the checkpoint carries (:class:`~dacovid_export.data.fingerprint.ImageRecord`,
   written by ``dacovid-train``; exported ONNX models carry a copy);

both, when both are there (a union: an image either names as training is one). Without
either, nothing can be checked, and every report says so in one line (:data:`NO_RECORD`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.log import get_logger
from dacovid_export.data.fingerprint import (
    Fingerprint,
    FingerprintSet,
    ImageRecord,
    fingerprint_files,
)
from dacovid_export.data.image_folder import check_image_source, find_images, is_split_file, load_split_json, split_part_paths

__all__ = ["NO_RECORD", "SortedImages", "resolve_record", "sort_images", "training_record"]

_log = get_logger("data")

NO_RECORD = (
    "could not check whether these images trained the checkpoint: it carries no record of its training images "
    "(trained elsewhere, or before dacovid-train recorded them); pass --training-data DIR|split.json"
)


def training_record(source: str | os.PathLike[str], *, progress: bool = False) -> ImageRecord:
    """The record ``--training-data`` names: every image of a folder, or a dacovid-train split.json's parts.

    A split.json written by this version carries its images' fingerprints and is read as is;
    an older one's images (and any folder's) are fingerprinted here, each decoded once.
    """
    path = check_image_source(source, "training data", "its training part")
    if is_split_file(path):
        data = load_split_json(path)
        if "images" in data:
            return ImageRecord.from_dict(data["images"], f"--training-data {str(path)!r}")
        data_dir = Path(str(data.get("data_dir", path.parent)))
        parts = {}
        for part in ("train", "val"):
            classes = data.get(part) or {}
            files = split_part_paths(data_dir, classes, part, path) if classes else {}
            parts[part] = [p for paths in files.values() for p in paths]
        train, val = parts["train"], parts["val"]
    else:
        train, val = find_images(path), []
    if not train:
        raise UserInputError(f"training data {str(path)!r} holds no images: give the folder the checkpoint was trained on")
    return ImageRecord(
        FingerprintSet.of(fingerprint_files(train, what="training images", progress=progress)),
        FingerprintSet.of(fingerprint_files(val, what="held-out images", progress=progress)),
        f"--training-data {str(path)!r}",
    )


def resolve_record(
    carried: ImageRecord | None, training_data: str | os.PathLike[str] | None, *, progress: bool = False
) -> ImageRecord | None:
    """The training images to exclude: ``training_data``'s record, the ``carried`` one, or both (union); None: unknown."""
    given = None if training_data is None else training_record(training_data, progress=progress)
    if given is None or carried is None:
        return given or carried
    return ImageRecord(
        FingerprintSet(np.concatenate([given.train.table, carried.train.table])),
        FingerprintSet(np.concatenate([given.val.table, carried.val.table])),
        f"{given.source} and {carried.source}",
    )


@dataclasses.dataclass(frozen=True)
class SortedImages:
    """Images of one source, told apart by the record: ``unseen`` (by stratum) and how many ``trained`` the checkpoint.

    ``fingerprints``: every image's, so the sets that are drawn can be recorded by content.
    ``record``: who said which images trained it (None: nobody; nothing was excluded then).
    """

    unseen: Mapping[str, list[Path]]
    trained: int
    fingerprints: Mapping[Path, Fingerprint]
    record: str | None

    @property
    def unseen_count(self) -> int:
        return sum(len(v) for v in self.unseen.values())


def sort_images(
    strata: Mapping[str, Sequence[Path]], record: ImageRecord | None, *, what: str, progress: bool = False
) -> SortedImages:
    """Fingerprint every image of ``strata`` and keep those ``record`` does not name as training images."""
    paths = [p for images in strata.values() for p in images]
    prints = dict(zip(paths, fingerprint_files(paths, what=what, progress=progress)))
    if record is None:
        return SortedImages({k: list(v) for k, v in strata.items()}, 0, prints, None)
    unseen = {name: [p for p in images if not record.trained(prints[p])] for name, images in strata.items()}
    trained = len(paths) - sum(len(v) for v in unseen.values())
    return SortedImages({k: v for k, v in unseen.items() if v}, trained, prints, record.source)

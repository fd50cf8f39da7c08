"""Calibration image sets: stratified seeded sampling, the shared preprocessing, content hash, clear errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.calibration import (
    MIN_CALIBRATION_IMAGES,
    CalibrationSet,
    load_calibration_set,
)
from dacovid_export.calibration.data import _allocate
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import Preprocessing, preprocess
from tests.helpers.images import write_broken_png, write_gray_png

SPEC = Preprocessing(image_size=64)


def test_stratified_sample_is_seeded_and_preprocessed_like_evaluation(synthetic_dir: Path) -> None:
    first = load_calibration_set(synthetic_dir, SPEC, size=12, seed=0)
    again = load_calibration_set(synthetic_dir, SPEC, size=12, seed=0)
    other = load_calibration_set(synthetic_dir, SPEC, size=12, seed=1)

    assert isinstance(first, CalibrationSet)
    assert first.array.shape == (12, 3, 64, 64) and first.array.dtype == np.float32
    assert dict(first.class_counts) == {"covid": 4, "normal": 4, "pneumonia": 4}
    assert [p.parent.name for p in first.paths].count("covid") == 4
    assert first.paths == again.paths and first.sha256 == again.sha256
    assert np.array_equal(first.array, again.array)
    assert other.paths != first.paths and other.sha256 != first.sha256
    relative = [p.relative_to(synthetic_dir).as_posix() for p in first.paths]
    assert relative == sorted(relative)
    # row i is paths[i] through the evaluation transform
    np.testing.assert_array_equal(first.array[5], preprocess(first.paths[5], SPEC))
    assert not first.array.flags.writeable


def test_allocation_is_proportional_and_keeps_small_classes() -> None:
    quota = _allocate({"covid": 100, "normal": 388, "pneumonia": 392}, 64)
    assert sum(quota.values()) == 64
    assert quota == {"covid": 7, "normal": 28, "pneumonia": 29}
    assert _allocate({"rare": 1, "common": 100}, 8) == {"common": 7, "rare": 1}


def test_flat_folder_is_one_stratum(synthetic_dir: Path, tmp_path: Path) -> None:
    for image in sorted((synthetic_dir / "normal").iterdir())[:5] + sorted((synthetic_dir / "covid").iterdir())[:5]:
        shutil.copy(image, tmp_path / f"{image.parent.name}_{image.name}")
    calib = load_calibration_set(tmp_path, SPEC, size=8, seed=0)
    assert len(calib) == 8 and dict(calib.class_counts) == {"": 8}


def test_fewer_images_than_requested_uses_all_and_says_so(synthetic_dir: Path, capsys: pytest.CaptureFixture) -> None:
    calib = load_calibration_set(synthetic_dir, SPEC, size=100, seed=0)
    assert len(calib) == 24 and calib.requested_size == 100
    err = capsys.readouterr().err
    assert "only 24 images" in err and "requested 100" in err


def test_content_hash_follows_content_not_mtime(synthetic_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_dir, root)
    before = load_calibration_set(root, SPEC, size=24, seed=0)
    assert before.sha256 == load_calibration_set(synthetic_dir, SPEC, size=24, seed=0).sha256  # copies hash alike
    os.utime(before.paths[0], (1, 1))
    assert load_calibration_set(root, SPEC, size=24, seed=0).sha256 == before.sha256
    write_gray_png(before.paths[0], size=64, value=7)
    assert load_calibration_set(root, SPEC, size=24, seed=0).sha256 != before.sha256
    # the preprocessing is part of what calibration sees
    assert load_calibration_set(root, Preprocessing(image_size=64, resize_policy="squash"), size=24).sha256 != before.sha256


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        load_calibration_set(tmp_path / "nope", SPEC, size=8)
    with pytest.raises(UserInputError, match="holds no images"):
        load_calibration_set(tmp_path, SPEC, size=8)
    (tmp_path / "normal").mkdir()
    with pytest.raises(UserInputError, match="holds no images"):
        load_calibration_set(tmp_path, SPEC, size=8)


def test_too_few_images(synthetic_dir: Path, tmp_path: Path) -> None:
    for image in sorted((synthetic_dir / "normal").iterdir())[: MIN_CALIBRATION_IMAGES - 1]:
        shutil.copy(image, tmp_path / image.name)
    with pytest.raises(UserInputError, match=f"has {MIN_CALIBRATION_IMAGES - 1} image.*at least {MIN_CALIBRATION_IMAGES}"):
        load_calibration_set(tmp_path, SPEC, size=8)


@pytest.mark.parametrize("size", [0, 4, 8.5, True])
def test_bad_size(synthetic_dir: Path, size: object) -> None:
    with pytest.raises(UserInputError, match="calibration size"):
        load_calibration_set(synthetic_dir, SPEC, size=size)  # type: ignore[arg-type]


def test_unreadable_image_names_the_file(synthetic_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_dir, root)
    write_broken_png(root / "pneumonia" / "broken.png")
    with pytest.raises(UserInputError, match=r"broken\.png.*unreadable"):
        load_calibration_set(root, SPEC, size=25)


@pytest.mark.realdata
def test_real_folder_sample(real_data_dir: Path) -> None:
    calib = load_calibration_set(real_data_dir, SPEC, size=16, seed=0)
    assert sum(calib.class_counts.values()) == 16 and all(v >= 1 for v in calib.class_counts.values())
    assert np.isfinite(calib.array).all()


def test_image_labels_follow_the_class_folders_or_are_none(synthetic_dir: Path, tmp_path: Path) -> None:
    from dacovid_export.calibration.data import image_labels, load_validation_set

    images = load_validation_set(synthetic_dir, Preprocessing(image_size=32), size=12, seed=0)
    # the model's class order decides the index, whatever the folder order; the paper's aliases match
    labels = image_labels(images, ("COVID-19", "Normal", "Pneumonia"))
    order = {"covid": 0, "normal": 1, "pneumonia": 2}
    assert labels is not None and labels.tolist() == [order[p.parent.name] for p in images.paths]
    assert image_labels(images, ("cat", "dog", "bird")) is None  # folders that are not the classes: no labels
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in images.paths[:4]:
        shutil.copy(p, flat / f"{p.parent.name}-{p.name}")
    assert image_labels(load_validation_set(flat, Preprocessing(image_size=32), size=4, seed=0), ("a", "b", "c")) is None


def test_image_labels_of_a_split_json_whose_classes_are_not_the_folder_names(synthetic_dir: Path, tmp_path: Path) -> None:
    """A dacovid-train split.json names classes ("COVID-19"); its images sit in folders (covid/): labels still follow."""
    import json

    from dacovid_export.calibration.data import image_labels, load_calibration_set

    names = {"normal": "Normal", "pneumonia": "Pneumonia", "covid": "COVID-19"}
    train = {name: sorted(f"{folder}/{p.name}" for p in (synthetic_dir / folder).iterdir()) for folder, name in names.items()}
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"format": "dacovid-split", "data_dir": str(synthetic_dir), "train": train, "val": train}))
    images = load_calibration_set(split, Preprocessing(image_size=32), size=12, seed=0)
    assert set(images.class_counts) == set(names.values())
    labels = image_labels(images, ("Normal", "Pneumonia", "COVID-19"))
    order = {"normal": 0, "pneumonia": 1, "covid": 2}
    assert labels is not None and labels.tolist() == [order[p.parent.name] for p in images.paths]

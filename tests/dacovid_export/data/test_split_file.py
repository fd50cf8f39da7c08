"""A training run's split.json stands in for an image folder: held-out images for parity, training images for calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.image_folder import labelled_images, read_split_file


def _write_split(synthetic_dir: Path, path: Path) -> Path:
    classes = {"normal": "Normal", "pneumonia": "Pneumonia", "covid": "COVID-19"}
    train, val = {}, {}
    for folder, name in classes.items():
        files = sorted(f"{folder}/{p.name}" for p in (synthetic_dir / folder).iterdir())
        train[name], val[name] = files[:6], files[6:]
    path.write_text(json.dumps({"format": "dacovid-split", "data_dir": str(synthetic_dir), "train": train, "val": val}))
    return path


def test_parts_resolve_to_existing_files(synthetic_dir: Path, tmp_path: Path) -> None:
    split = _write_split(synthetic_dir, tmp_path / "split.json")
    data_dir, val = read_split_file(split, "val")
    assert data_dir == synthetic_dir
    assert {k: len(v) for k, v in val.items()} == {"Normal": 2, "Pneumonia": 2, "COVID-19": 2}
    assert all(p.is_file() for paths in val.values() for p in paths)
    train = labelled_images(split, part="train")
    assert sum(len(v) for v in train.values()) == 18
    assert not set(train["Normal"]) & set(val["Normal"])
    assert labelled_images(synthetic_dir).keys() == {"normal", "pneumonia", "covid"}


def test_bad_split_files(synthetic_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(UserInputError, match="not a dacovid-train split file"):
        read_split_file(tmp_path / "other.json", "val")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserInputError, match="not readable JSON"):
        read_split_file(tmp_path / "broken.json", "val")
    split = _write_split(synthetic_dir, tmp_path / "split.json")
    moved = json.loads(split.read_text())
    moved["data_dir"] = str(tmp_path / "moved")
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    with pytest.raises(UserInputError, match="missing"):
        read_split_file(tmp_path / "moved.json", "val")
    with pytest.raises(UserInputError, match="no 'test' images"):
        read_split_file(split, "test")


def test_calibration_draws_only_training_images(synthetic_dir: Path, tmp_path: Path) -> None:
    from dacovid_export.calibration.data import load_calibration_set
    from dacovid_export.data.preprocessing import Preprocessing

    split = _write_split(synthetic_dir, tmp_path / "split.json")
    calib = load_calibration_set(split, Preprocessing(image_size=64), size=9, seed=0)
    _, val = read_split_file(split, "val")
    held_out = {p for paths in val.values() for p in paths}
    assert len(calib.paths) == 9
    assert not held_out & set(calib.paths)


def test_check_on_a_split_file_uses_the_held_out_images(
    tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    from dacovid_export.parity.run import run_parity

    split = _write_split(synthetic_dir, tmp_path / "split.json")
    report = run_parity(tiny_checkpoint, [tiny_fp32_onnx], images=split, progress=False)
    assert report
    assert report.to_dict()["inputs"]["count"] == 6

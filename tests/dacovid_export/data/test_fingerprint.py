"""Image fingerprints: a training image is recognised under any name, link, copy or lossless re-encoding."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.evidence import resolve_record, sort_images, training_record
from dacovid_export.data.fingerprint import FingerprintSet, ImageRecord, fingerprint_files, fingerprint_image


def _gray(seed: int, shape: tuple[int, int] = (48, 40)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


@pytest.fixture()
def trained(tmp_path: Path) -> tuple[Path, ImageRecord]:
    """A training image a.png in train/ and the record of train/."""
    folder = tmp_path / "train"
    folder.mkdir()
    Image.fromarray(_gray(0)).save(folder / "a.png")
    Image.fromarray(_gray(1)).save(folder / "b.png")
    return folder / "a.png", training_record(folder)


def test_the_same_image_in_every_disguise_is_a_training_image(tmp_path: Path, trained: tuple[Path, ImageRecord]) -> None:
    from tests.helpers.dicom import write_dx

    source, record = trained
    pixels = np.asarray(Image.open(source))
    other = tmp_path / "other"
    other.mkdir()
    disguises = {
        "another name": shutil.copyfile(source, other / "renamed.png"),
        "symlink": other / "link.png",
        "hard link": other / "hard.png",
        "16-bit PNG": other / "deep.png",
        "PNG resaved (other compression)": other / "resaved.png",
        "DICOM 8-bit": write_dx(other / "IM0001.dcm", pixels),
        "DICOM 16-bit": write_dx(other / "IM0002.dcm", pixels.astype(np.uint16) * 257),
    }
    os.symlink(source, disguises["symlink"])
    os.link(source, disguises["hard link"])
    Image.fromarray(pixels.astype(np.uint16) * 257).save(disguises["16-bit PNG"])
    Image.open(source).save(disguises["PNG resaved (other compression)"], compress_level=9)
    assert Image.open(disguises["16-bit PNG"]).mode.startswith("I")
    for how, path in disguises.items():
        assert record.trained(fingerprint_image(path)), how
    # the pixels, not the container: only a file copy keeps the bytes
    assert fingerprint_image(disguises["DICOM 8-bit"]).file != fingerprint_image(source).file


def test_a_new_image_or_a_changed_pixel_is_unseen(tmp_path: Path, trained: tuple[Path, ImageRecord]) -> None:
    source, record = trained
    pixels = np.asarray(Image.open(source)).copy()
    pixels[3, 4] ^= 1
    Image.fromarray(pixels).save(tmp_path / "edited.png")
    Image.fromarray(_gray(7)).save(tmp_path / "new.png")
    assert not record.trained(fingerprint_image(tmp_path / "edited.png"))
    assert not record.trained(fingerprint_image(tmp_path / "new.png"))


def test_sort_images_counts_training_images_per_source(tmp_path: Path, trained: tuple[Path, ImageRecord]) -> None:
    source, record = trained
    Image.fromarray(_gray(9)).save(tmp_path / "new.png")
    copy = shutil.copyfile(source, tmp_path / "copy.png")
    found = sort_images({"Normal": [copy, tmp_path / "new.png"]}, record, what="test images")
    assert found.trained == 1 and found.unseen == {"Normal": [tmp_path / "new.png"]}
    assert found.record == record.source
    unknown = sort_images({"Normal": [copy]}, None, what="test images")
    assert unknown.trained == 0 and unknown.record is None and unknown.unseen_count == 1


def test_record_round_trips_as_json_and_as_safe_tensors(tmp_path: Path, trained: tuple[Path, ImageRecord]) -> None:
    import torch

    _, record = trained
    assert ImageRecord.from_dict(record.to_dict(), "json") == record
    torch.save({"image_record": record.to_tensors()}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)  # tensors only: never unpickles code
    assert ImageRecord.from_tensors(loaded["image_record"], "pt") == record
    # 16 bytes an image: 10,000 images are 160 kB
    assert record.train.table.nbytes == 16 * len(record.train)


def test_damaged_records_are_one_line_errors() -> None:
    with pytest.raises(UserInputError, match="not valid base64"):
        FingerprintSet.from_base64("!!!", "split.json")
    with pytest.raises(UserInputError, match="whole number"):
        FingerprintSet.from_base64("AAAA", "split.json")
    with pytest.raises(UserInputError, match="not a 'dacovid-image-record/1' record"):
        ImageRecord.from_dict({"format": "other"}, "x")


def test_resolve_record_unites_the_carried_record_and_training_data(tmp_path: Path, trained: tuple[Path, ImageRecord]) -> None:
    _, record = trained
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    Image.fromarray(_gray(5)).save(extra / "c.png")
    both = resolve_record(record, extra)
    assert both is not None and len(both.train) == 3
    assert both.trained(fingerprint_files([extra / "c.png"])[0])
    assert resolve_record(None, None) is None
    assert resolve_record(record, None) is record

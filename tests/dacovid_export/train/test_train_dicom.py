"""dacovid-train folders with DICOM files: read like PNGs, and --strict-dicom makes non-chest files unreadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.dicom import DicomWarning
from dacovid_export.train.config import TrainConfig
from dacovid_export.train.data import make_split
from tests.helpers.dicom import write_dx


def _tree(synthetic_dir: Path, root: Path) -> Path:
    for png in sorted(synthetic_dir.rglob("*.png")):
        folder = root / png.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        write_dx(folder / f"{png.stem}.dcm", np.asarray(Image.open(png).convert("L")))
    write_dx(root / "covid" / "zz_knee.dcm", np.full((64, 64), 7, dtype=np.uint8), BodyPartExamined="KNEE")
    return root


def test_dicom_folders_and_strict(synthetic_dir: Path, tmp_path: Path) -> None:
    root = _tree(synthetic_dir, tmp_path / "data")
    with pytest.warns(DicomWarning, match="body part 'KNEE'"):
        split = make_split(root, val_fraction=0.25, seed=0)
    assert split.skipped == () and sum(split.counts("train").values()) + sum(split.counts("val").values()) == 25
    strict = make_split(root, val_fraction=0.25, seed=0, strict_dicom=True)
    assert len(strict.skipped) == 1 and "zz_knee.dcm" in strict.skipped[0] and "--strict-dicom" in strict.skipped[0]
    with pytest.raises(UserInputError, match="body part 'KNEE'.*set unreadable to 'skip'"):
        make_split(root, val_fraction=0.25, seed=0, strict_dicom=True, unreadable="error")
    assert TrainConfig(strict_dicom=True).strict_dicom
    with pytest.raises(UserInputError, match="strict_dicom='yes'"):
        TrainConfig(strict_dicom="yes")  # type: ignore[arg-type]

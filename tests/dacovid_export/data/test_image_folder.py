from __future__ import annotations

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.image_folder import (
    canonical_class_name,
    find_images,
    match_folders_to_classes,
    order_classes,
    scan_class_folders,
)


def test_scan_and_order(synthetic_dir) -> None:
    classes = scan_class_folders(synthetic_dir, min_classes=2)
    assert sorted(classes) == ["covid", "normal", "pneumonia"]
    assert all(len(v) == 8 for v in classes.values())
    assert order_classes(list(classes)) == ["normal", "pneumonia", "covid"]
    assert [canonical_class_name(n) for n in order_classes(list(classes))] == ["Normal", "Pneumonia", "COVID-19"]


def test_aliases_match_model_classes() -> None:
    mapping = match_folders_to_classes(["COVID19", "No_findings", "PNEUMONIA"], ("Normal", "Pneumonia", "COVID-19"))
    assert mapping == {"COVID19": 2, "No_findings": 0, "PNEUMONIA": 1}
    with pytest.raises(UserInputError, match="'tuberculosis'"):
        match_folders_to_classes(["tuberculosis"], ("Normal", "Pneumonia", "COVID-19"))


def test_errors(tmp_path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        scan_class_folders(tmp_path / "missing")
    with pytest.raises(UserInputError, match="no class subfolders"):
        scan_class_folders(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(UserInputError, match="holds no images"):
        scan_class_folders(tmp_path)


def test_hidden_files_are_skipped(tmp_path) -> None:
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.png").write_bytes(b"")
    (tmp_path / "y.png").write_bytes(b"")
    assert [p.name for p in find_images(tmp_path)] == ["y.png"]

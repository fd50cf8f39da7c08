"""Data discovery, image checks, the stratified split and split.json (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.synthetic import make_synthetic_dataset
from dacovid_export.train import (
    TrainConfig,
    heldout_files,
    make_split,
    read_split,
    stratified_split,
)
from dacovid_export.train.data import SPLIT_FILENAME, detect_layout, write_split
from tests.helpers.images import write_broken_png
from tests.helpers.logs import said_lines


def _fake_files(counts: dict[str, int]) -> dict[str, list[Path]]:
    return {name: [Path(f"/data/{name}/{i:03d}.png") for i in range(n)] for name, n in counts.items()}


def test_stratified_split_is_stratified_disjoint_and_complete() -> None:
    files = _fake_files({"Normal": 50, "Pneumonia": 31, "COVID-19": 7})
    train, val = stratified_split(files, 0.2, seed=0)
    assert {k: len(v) for k, v in val.items()} == {"Normal": 10, "Pneumonia": 6, "COVID-19": 1}
    for name, paths in files.items():
        assert not set(train[name]) & set(val[name])
        assert sorted(train[name] + val[name]) == sorted(paths)


def test_stratified_split_is_deterministic_and_seeded() -> None:
    files = _fake_files({"Normal": 40, "Pneumonia": 40})
    a = stratified_split(files, 0.25, seed=3)
    b = stratified_split({k: list(reversed(v)) for k, v in files.items()}, 0.25, seed=3)  # input order must not matter
    c = stratified_split(files, 0.25, seed=4)
    assert a == b
    assert a[1] != c[1]


def test_a_class_split_does_not_depend_on_the_other_classes() -> None:
    both = stratified_split(_fake_files({"Normal": 30, "Pneumonia": 30}), 0.2, seed=0)
    alone = stratified_split(_fake_files({"Normal": 30, "COVID-19": 5}), 0.2, seed=0)
    assert both[1]["Normal"] == alone[1]["Normal"]


def test_every_class_keeps_at_least_one_image_on_each_side() -> None:
    train, val = stratified_split(_fake_files({"Normal": 2, "Pneumonia": 3}), 0.01, seed=0)
    assert all(len(v) == 1 for v in val.values())
    train, val = stratified_split(_fake_files({"Normal": 2, "Pneumonia": 3}), 0.99, seed=0)
    assert all(len(v) >= 1 for v in train.values())
    with pytest.raises(UserInputError, match="at least 2"):
        stratified_split(_fake_files({"Normal": 1, "Pneumonia": 3}), 0.2, seed=0)


def test_make_split_uses_paper_class_names_and_order_and_round_trips(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", per_class=5, size=32, seed=0)
    split = make_split(data, val_fraction=0.2, seed=0)
    assert split.layout == "folders"
    assert split.class_names == ("Normal", "Pneumonia", "COVID-19")
    assert split.counts("val") == {"Normal": 1, "Pneumonia": 1, "COVID-19": 1}
    assert all(p.is_file() for p, _ in split.items("train") + split.items("val"))
    assert [label for _, label in split.items("val")] == [0, 1, 2]
    write_split(tmp_path / "run" / SPLIT_FILENAME, split)
    again = read_split(tmp_path / "run" / SPLIT_FILENAME)
    assert again == split
    assert again.sha256() == split.sha256()
    held = heldout_files(tmp_path / "run")
    assert list(held) == ["Normal", "Pneumonia", "COVID-19"]
    assert [p.parent.name for p in held["COVID-19"]] == ["covid"]
    # a checkpoint path inside the run folder finds the same split
    assert heldout_files(tmp_path / "run" / "best.pt") == held


def test_kaggle_layout_evaluates_on_test_folder(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "k", per_class=6, size=32, seed=0, layout="kaggle", test_per_class=2)
    for sub in ("train", "test"):  # the Kaggle set's own folder names
        for old, new in (("covid", "COVID19"), ("normal", "NORMAL"), ("pneumonia", "PNEUMONIA")):
            (root / sub / old).rename(root / sub / new)
    assert detect_layout(root) == "kaggle"
    split = make_split(root, val_fraction=0.5, seed=0)
    assert split.layout == "kaggle" and split.val_fraction is None
    assert split.class_names == ("Normal", "Pneumonia", "COVID-19")
    assert split.counts("train") == {"Normal": 6, "Pneumonia": 6, "COVID-19": 6}
    assert split.counts("val") == {"Normal": 2, "Pneumonia": 2, "COVID-19": 2}
    assert all(rel.startswith("test/") for v in split.val.values() for rel in v)
    assert all(rel.startswith("train/") for v in split.train.values() for rel in v)


def test_kaggle_layout_needs_same_classes(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "k", per_class=4, size=32, seed=0, layout="kaggle")
    for p in (root / "test" / "covid").iterdir():
        p.unlink()
    (root / "test" / "covid").rmdir()
    with pytest.raises(UserInputError, match="same class folders"):
        make_split(root, val_fraction=0.2, seed=0)


def test_unreadable_images_are_skipped_and_listed(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", per_class=4, size=32, seed=0)
    (data / "normal" / "broken.png").write_bytes(b"not an image at all")
    with said_lines("train") as messages:
        split = make_split(data, val_fraction=0.25, seed=0, say=True)
    assert len(split.skipped) == 1 and "broken.png" in split.skipped[0]
    assert sum(split.counts("train").values()) + sum(split.counts("val").values()) == 12
    assert any("broken.png" in m for m in messages) and any("skipped 1" in m for m in messages)
    with pytest.raises(UserInputError, match="broken.png"):
        make_split(data, val_fraction=0.25, seed=0, unreadable="error")


def test_class_without_readable_images_is_an_error(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", per_class=3, size=32, seed=0)
    for p in (data / "covid").iterdir():
        write_broken_png(p)
    with pytest.raises(UserInputError, match="'COVID-19' has no readable images"):
        make_split(data, val_fraction=0.25, seed=0)


def test_two_folders_with_the_same_meaning_are_an_error(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", per_class=2, size=32, seed=0)
    make_synthetic_dataset(tmp_path / "x", per_class=2, size=32, seed=1, classes=("covid19",))
    (tmp_path / "x" / "covid19").rename(data / "covid19")
    with pytest.raises(UserInputError, match="both mean class 'COVID-19'"):
        make_split(data, val_fraction=0.5, seed=0)


def test_heldout_files_reports_missing_split(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="split.json"):
        heldout_files(tmp_path)


@pytest.mark.parametrize(
    "options, word",
    [
        ({"image_size": 16}, "image_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0}, "val_fraction"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"reduction_kernel_size": 2}, "reduction_kernel_size"),
        ({"reduction_channels": 12}, "reduction_channels"),
        ({"output_stride": 4}, "output_stride"),
        ({"dropout": 1.0}, "dropout"),
        ({"device": "gpu"}, "device"),
        ({"workers": -1}, "workers"),
        ({"seed": -1}, "seed"),
        ({"unreadable": "ignore"}, "unreadable"),
    ],
)
def test_config_rejects_bad_values_naming_them(options: dict, word: str) -> None:
    with pytest.raises(UserInputError, match=word):
        TrainConfig(**options)


def test_config_defaults_are_the_papers() -> None:
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.image_size) == (30, 48, 1e-4, 224)
    mc = config.model_config()
    assert (mc.output_stride, mc.reduction_channels, mc.reduction_kernel_size, mc.dropout) == (8, 512, 3, 0.1)
    assert 0 <= config.num_workers <= 4

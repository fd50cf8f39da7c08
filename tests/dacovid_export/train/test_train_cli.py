"""`dacovid-train` through Click: bad input is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dacovid_export.cli.train_cmd import train
from dacovid_export.data.synthetic import make_synthetic_dataset
from tests.helpers.cli import assert_one_line_error, invoke

TINY = ["--image-size", "64", "--batch-size", "4", "--lr", "1e-3", "--reduction-channels", "16", "--reduction-kernel", "1",
        "--dropout", "0", "--workers", "0", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("cli") / "d", per_class=4, size=64, seed=0)


def _copy(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest


def test_help_lists_the_paper_defaults() -> None:
    result = invoke(train, ["--help"])
    assert result.exit_code == 0
    for option in ("--epochs", "--batch-size", "--lr", "--image-size", "--output-stride", "--val-fraction", "--seed",
                   "--device", "--workers", "--backbone-weights", "--class-weights", "--resume",
                   "--reduction-channels", "--reduction-kernel", "--dropout"):  # fmt: skip
        assert option in result.output
    assert "default: 48" in result.output and "0.0001" in result.output


def test_missing_folder(tmp_path: Path) -> None:
    assert_one_line_error(invoke(train, [tmp_path / "nope", "--out", tmp_path / "run", *TINY]), "does not exist")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke(train, [tmp_path / "empty", "--out", tmp_path / "run", *TINY]), "no class subfolders")


def test_single_class(data: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    shutil.copytree(data / "covid", one / "covid")
    assert_one_line_error(invoke(train, [one, "--out", tmp_path / "run", *TINY]), "at least 2 needed")


def test_class_folder_without_images(data: Path, tmp_path: Path) -> None:
    d = _copy(data, tmp_path / "d")
    (d / "extra").mkdir()
    (d / "extra" / "notes.txt").write_text("no images here")
    assert_one_line_error(invoke(train, [d, "--out", tmp_path / "run", *TINY]), "extra", "holds no images")


def test_class_whose_images_are_all_unreadable(data: Path, tmp_path: Path) -> None:
    d = _copy(data, tmp_path / "d")
    for p in (d / "pneumonia").iterdir():
        p.write_bytes(b"garbage")
    result = invoke(train, [d, "--out", tmp_path / "run", *TINY])
    # the train logger names each skipped file on stderr first; then the one error line
    *skipped, last = result.stderr.splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(skipped) == 4 and all(line.startswith("skipping unreadable image ") for line in skipped), skipped
    assert last.startswith("error: ") and "'Pneumonia' has no readable images" in last


def test_unreadable_image_with_unreadable_error(data: Path, tmp_path: Path) -> None:
    d = _copy(data, tmp_path / "d")
    (d / "normal" / "zz_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    assert_one_line_error(invoke(train, [d, "--out", tmp_path / "run", "--unreadable", "error", *TINY]), "zz_bad.jpg", "unreadable")


def test_resume_without_a_run(data: Path, tmp_path: Path) -> None:
    assert_one_line_error(invoke(train, [data, "--out", tmp_path / "run", "--resume", *TINY]), "nothing to resume")


def test_resume_from_a_file_that_is_not_a_checkpoint(data: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"this is not a checkpoint")
    assert_one_line_error(invoke(train, [data, "--out", tmp_path / "run", "--resume", *TINY]), "not a dacovid-export checkpoint")


def test_resume_from_a_checkpoint_without_training_state(data: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    (tmp_path / "run").mkdir()
    shutil.copy(tiny_checkpoint, tmp_path / "run" / "last.pt")
    assert_one_line_error(invoke(train, [data, "--out", tmp_path / "run", "--resume", *TINY]), "holds no training state")


def test_backbone_weights_that_are_not_a_state_dict(data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "resnet50.pth"
    bad.write_text("definitely not weights")
    assert_one_line_error(
        invoke(train, [data, "--out", tmp_path / "run", "--backbone-weights", bad, *TINY]), "resnet50.pth", "ResNet50 state dict"
    )


def test_backbone_weights_that_do_not_exist(data: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        invoke(train, [data, "--out", tmp_path / "run", "--backbone-weights", tmp_path / "missing.pth", *TINY]), "do not exist"
    )


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--image-size", "16", "image_size=16"),
        ("--val-fraction", "1.5", "val_fraction=1.5"),
        ("--val-fraction", "0", "val_fraction=0"),
        ("--epochs", "0", "epochs=0"),
        ("--batch-size", "1", "batch_size=1"),
        ("--lr", "0", "lr=0"),
        ("--reduction-kernel", "2", "reduction_kernel_size=2"),
        ("--output-stride", "4", "output_stride=4"),
        ("--dropout", "1", "dropout=1"),
        ("--device", "gpu", "device='gpu'"),
        ("--workers", "-1", "workers=-1"),
        ("--unreadable", "maybe", "unreadable='maybe'"),
    ],
)
def test_bad_option_values(data: Path, tmp_path: Path, option: str, value: str, fragment: str) -> None:
    args = [a for a in TINY]
    if option in args:
        i = args.index(option)
        del args[i : i + 2]
    assert_one_line_error(invoke(train, [data, "--out", tmp_path / "run", *args, option, value]), fragment)
    assert not (tmp_path / "run").exists()


def test_train_then_resume_through_the_cli(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = invoke(train, [data, "--out", run, "--epochs", "1", *TINY])
    assert first.exit_code == 0, first.output
    assert "best checkpoint:" in first.stdout and "accuracy" in first.stdout
    assert "epoch 1/1" in first.stderr  # the train logger's lines: stderr, around the bars
    again = invoke(train, [data, "--out", run, "--epochs", "1", *TINY])
    assert_one_line_error(again, "already holds a training run", "--resume")
    second = invoke(train, [data, "--out", run, "--epochs", "2", "--resume", *TINY])
    assert second.exit_code == 0, second.output
    assert "after epoch 1" in second.stderr and "epoch 2/2" in second.stderr and "epoch 1/1" not in second.stderr
    changed = invoke(train, [data, "--out", run, "--epochs", "3", "--resume", *[a if a != "64" else "96" for a in TINY]])
    assert_one_line_error(changed, "image_size (run: 64, now: 96)")


def test_quiet_training_says_nothing_on_stderr(data: Path, tmp_path: Path) -> None:
    from dacovid_export.core.log import set_verbosity

    loud = [a for a in TINY if a != "--no-progress"]  # bars on: -q must hide them too
    try:
        result = invoke(train, [data, "--out", tmp_path / "run", "--epochs", "1", *loud, "-q"])
    finally:
        set_verbosity()
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "best checkpoint:" in result.stdout and "epoch 1/1" not in result.stdout

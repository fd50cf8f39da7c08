"""Guards validate on unseen images only: training images are found by content and kept out, or the step refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.evidence import NO_RECORD
from dacovid_export.data.fingerprint import fingerprint_files
from dacovid_export.train import heldout_files

pytest.importorskip("modelopt.onnx.autocast")

from dacovid_export.artifacts.onnx_metadata import read_metadata  # noqa: E402
from dacovid_export.calibration.config import PrecisionConfig  # noqa: E402
from dacovid_export.calibration.convert import convert_precision  # noqa: E402


def _fp16(source: Path, out: Path, **options):
    return convert_precision(source, out, PrecisionConfig(precision="fp16", **options))


def _held_out_prints(checkpoint: Path) -> set[str]:
    return {f.hex() for f in fingerprint_files([p for ps in heldout_files(checkpoint).values() for p in ps])}


def test_fp16_guard_on_the_training_tree_validates_on_held_out_images_only(
    tmp_path: Path, recorded_checkpoint: Path, recorded_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    result = _fp16(recorded_fp32_onnx, tmp_path / "m16.onnx", calib_data=synthetic_dir)
    validation = result.guard.validation
    # 24 images: 18 trained the checkpoint; of its 6 unseen ones the guard takes 4, 2 are left for check
    assert (validation["unseen"], validation["excluded_training"], validation["left_for_check"]) == (4, 18, 2)
    assert set(validation["fingerprints"]) <= _held_out_prints(recorded_checkpoint)
    line = next(l for l in result.guard.lines() if "validation images:" in l)
    assert "4 unseen validation images, 18 excluded as training images" in line
    # the artifact carries the evidence: its guard's images by content, and the checkpoint's record
    meta = read_metadata(tmp_path / "m16.onnx")
    assert json.loads(meta["fp16_guard"])["validation"]["fingerprints"] == validation["fingerprints"]
    assert "image_record" in meta


def test_split_json_gives_the_guard_half_of_its_held_out_part(
    tmp_path: Path, recorded_checkpoint: Path, recorded_fp32_onnx: Path
) -> None:
    split = recorded_checkpoint.parent / "split.json"
    result = _fp16(recorded_fp32_onnx, tmp_path / "m16.onnx", calib_data=split)
    validation = result.guard.validation
    assert (validation["unseen"], validation["excluded_training"], validation["left_for_check"]) == (4, 0, 2)
    assert set(validation["fingerprints"]) <= _held_out_prints(recorded_checkpoint)


def test_validation_images_that_all_trained_the_checkpoint_are_refused(
    tmp_path: Path, recorded_fp32_onnx: Path, recorded_checkpoint: Path
) -> None:
    train = json.loads((recorded_checkpoint.parent / "split.json").read_text())
    copies = tmp_path / "copies" / "normal"
    copies.mkdir(parents=True)
    for rel in train["train"]["Normal"]:
        shutil.copyfile(Path(train["data_dir"]) / rel, copies / ("copy_" + Path(rel).name))
    with pytest.raises(UserInputError, match=r"0 image\(s\) did not train the checkpoint \(6 did") as caught:
        _fp16(recorded_fp32_onnx, tmp_path / "m16.onnx", validation_data=copies.parent)
    assert "--validation-data" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "m16.onnx").exists()


def test_a_checkpoint_without_a_record_says_so_once_and_goes_on(
    tmp_path: Path, tiny_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    result = _fp16(tiny_fp32_onnx, tmp_path / "m16.onnx", calib_data=synthetic_dir)
    assert sum(NO_RECORD in line for line in result.guard.lines()) == 1
    assert result.guard.validation["training_record"] is None


def test_training_data_tells_a_checkpoint_made_elsewhere_its_training_images(
    tmp_path: Path, tiny_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    trained = tmp_path / "trained_elsewhere"
    shutil.copytree(synthetic_dir / "normal", trained / "normal")
    result = _fp16(tiny_fp32_onnx, tmp_path / "m16.onnx", calib_data=synthetic_dir, training_data=trained)
    validation = result.guard.validation
    assert validation["excluded_training"] == 8
    assert "--training-data" in validation["training_record"]
    normal = {f.hex() for f in fingerprint_files(sorted((synthetic_dir / "normal").iterdir()))}
    assert not set(validation["fingerprints"]) & normal

"""check says on what its verdict stands: images that trained the checkpoint or chose the model are set aside."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.parity.run import run_parity
from dacovid_export.train import heldout_files

pytest.importorskip("onnxruntime")


def _held_out(checkpoint: Path) -> list[Path]:
    return [p for ps in heldout_files(checkpoint).values() for p in ps]


def test_check_judges_on_unseen_images_and_reports_training_images_apart(
    recorded_checkpoint: Path, recorded_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    report = run_parity(recorded_checkpoint, [recorded_fp32_onnx], images=synthetic_dir, progress=False)
    model = report.models[0]
    assert model.count == 6 and model.evidence["verdict_images"] == 6 and model.evidence["trained_checkpoint"] == 18
    assert [(r.name, r.count) for r in model.other_rows] == [("trained the checkpoint", 18)]
    # an auditor can confirm the evidence set: the verdict images' sha256 are the held-out files'
    held = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in _held_out(recorded_checkpoint))
    assert sorted(model.evidence["verdict_image_sha256"]) == held
    data = report.to_dict()
    assert data["inputs"]["trained_checkpoint"] == 18 and len(data["inputs"]["image_fingerprints"]) == 24
    table = report.format_table()
    assert "18 trained the checkpoint" in table and "not judged" in table
    assert report.reference.classification is not None and sum(report.reference.classification.support) == 6


def test_check_sets_aside_the_images_the_guard_chose_the_model_on(
    tmp_path: Path, recorded_checkpoint: Path, recorded_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    pytest.importorskip("modelopt.onnx.autocast")
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.convert import convert_precision

    fp16 = convert_precision(
        recorded_fp32_onnx, tmp_path / "m16.onnx", PrecisionConfig(precision="fp16", calib_data=synthetic_dir)
    ).path
    model = run_parity(recorded_checkpoint, [fp16], images=synthetic_dir, progress=False).models[0]
    assert (model.evidence["verdict_images"], model.evidence["chose_model"]) == (2, 4)
    assert [r.count for r in model.other_rows] == [18, 4]


def test_check_refuses_an_image_set_that_only_trained_the_checkpoint(
    tmp_path: Path, recorded_checkpoint: Path, recorded_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    from dacovid_export.cli.main import cli
    from tests.helpers.cli import assert_one_line_error, invoke

    held = set(_held_out(recorded_checkpoint))
    seen = tmp_path / "seen"
    for folder in sorted(p for p in synthetic_dir.iterdir() if p.is_dir()):
        (seen / folder.name).mkdir(parents=True)
        for image in folder.iterdir():
            if image not in held:
                shutil.copyfile(image, seen / folder.name / ("renamed_" + image.name))
    with pytest.raises(UserInputError, match="all 18 --images trained the checkpoint"):
        run_parity(recorded_checkpoint, [recorded_fp32_onnx], images=seen, progress=False)
    args = ["check", "--checkpoint", recorded_checkpoint, "--images", seen, "--no-progress", recorded_fp32_onnx]
    assert_one_line_error(invoke(cli, args), "trained the checkpoint")


def test_training_data_marks_images_for_a_checkpoint_without_record(
    tmp_path: Path, tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path
) -> None:
    plain = run_parity(tiny_checkpoint, [tiny_fp32_onnx], images=synthetic_dir, progress=False)
    assert plain.models[0].evidence["training_record"] is None
    assert "could not check whether these images trained the checkpoint" in plain.format_table()
    trained = tmp_path / "trained"
    shutil.copytree(synthetic_dir / "covid", trained / "covid")
    report = run_parity(
        tiny_checkpoint, [tiny_fp32_onnx], images=synthetic_dir, progress=False, training_data=trained
    )
    assert report.models[0].evidence["trained_checkpoint"] == 8 and report.models[0].count == 16
    json.dumps(report.to_dict())  # the evidence is plain JSON

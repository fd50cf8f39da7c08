"""FP16 and INT8 ONNX models end to end: CLI export, metadata re-stamped, structural checks, numerics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dacovid_export.artifacts.onnx_metadata import read_metadata, read_onnx_info
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import convert_precision, export_at_precision
from dacovid_export.calibration.step_metadata import guard_report_of
from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import sha256_file
from dacovid_export.core.onnxruntime_session import open_session, run_session
from dacovid_export.export.checks import (
    check_qdq_zero_points,
    run_structural_checks,
    validate_model,
)
from dacovid_export.export.onnx_export import sample_batch
from dacovid_export.model import load_checkpoint
from tests.helpers.cli import invoke


def _torch_logits(checkpoint: Path, batch: np.ndarray) -> np.ndarray:
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


def _softmax_nodes(path: Path) -> set[str]:
    return {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Softmax"}


def test_cli_fp16_end_to_end(tmp_path: Path, tiny_checkpoint: Path, synthetic_dir: Path) -> None:
    out = tmp_path / "tiny.fp16.onnx"
    args = ["onnx", str(tiny_checkpoint), "-o", str(out), "--precision", "fp16", "--calib-data", str(synthetic_dir), "--calib-size", "8"]
    result = invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "nodes kept in FP32" in result.output and "onnxruntime fp16 vs onnxruntime fp32" in result.output
    assert "onnxruntime fp32 vs pytorch" in result.output and "precision " in result.output  # step timings

    info = read_onnx_info(out)
    assert info.precision == "fp16"
    assert info.source_sha256 == sha256_file(tiny_checkpoint)
    assert info.class_names == ("Normal", "Pneumonia", "COVID-19") and info.image_size == 64
    meta = read_metadata(out)
    fp32_nodes = json.loads(meta["fp32_nodes"])
    assert _softmax_nodes(out) <= set(fp32_nodes)  # the attention stayed FP32
    assert json.loads(meta["calibration"])["images"] == 8
    assert len(meta["parent_sha256"]) == 64
    # the FP16 guard judged it on the held-out quarter of --calib-data (6 of 24 images), never the range-check images
    guard = json.loads(meta["fp16_guard"])
    assert guard["passed"] and guard["after"]["images"] == 6 and guard["target_agreement"] == 0.995
    assert "FP16 guard: agreement with FP32 on 6 validation images" in result.output

    model = validate_model(out)
    report = run_structural_checks(model, attention_fp32=True)
    assert "attention kept in FP32" in report.checks
    assert report.histogram.get("Cast", 0) > 0
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)

    batch = sample_batch(info.preprocessing, 3, seed=7)
    expected = _torch_logits(tiny_checkpoint, batch)
    session = open_session(out, purpose="run the test")
    for n in (1, 3):
        got = run_session(session, batch[:n])
        assert np.abs(got - expected[:n]).max() <= 0.05 * np.abs(expected).max()


def test_cli_int8_end_to_end(tmp_path: Path, tiny_checkpoint: Path, synthetic_dir: Path) -> None:
    out = tmp_path / "tiny.int8.onnx"
    args = [
        "onnx", str(tiny_checkpoint), "-o", str(out), "--precision", "int8", "--calib-data", str(synthetic_dir),
        "--calib-size", "16", "--calib-method", "max", "--cache-dir", str(tmp_path / "cache"),
        "--atol", "0", "--rtol", "0",  # no INT8 model matches exactly: the guard's agreement is the one gate
    ]  # fmt: skip
    result = invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "onnxruntime int8 vs onnxruntime fp32: batch 1:" in result.output and "reported only" in result.output
    assert f"calibration cache: {tmp_path / 'cache'} holds 1 entry" in result.stderr and "DACOVID_CACHE_MAX_GB" in result.stderr
    assert "Q/DQ nodes, symmetric INT8 with zero point 0" in result.output
    assert "nodes kept in FP32" in result.output
    assert "INT8 guard: max calibration; agreement with FP32 on 6 validation images" in result.output

    info = read_onnx_info(out)
    assert info.precision == "int8" and info.source_sha256 == sha256_file(tiny_checkpoint)
    meta = read_metadata(out)
    calibration = json.loads(meta["calibration"])
    assert calibration["method"] == "max" and calibration["images"] == 16 and len(calibration["sha256"]) == 64
    assert _softmax_nodes(out) <= set(json.loads(meta["fp32_nodes"]))
    # the accuracy guard's verdict travels with the model; validation images are held out of calibration
    guard = json.loads(meta["int8_guard"])
    assert guard["passed"] and guard["method"] == "max" and guard["target_agreement"] == 0.99
    assert guard["after"]["images"] == 6 and guard["after"]["agreement"] >= 0.99
    # read back from the metadata, the report is typed again and renders the lines the command printed
    assert all(f"{line}\n" in result.output for line in guard_report_of(meta).lines())
    assert guard["convs"] > 50 and guard["int8_conv_share"] >= 0.8
    assert "held out from calibration" in guard["validation"]["source"]
    # the synthetic images sit in class folders: FP32 and INT8 accuracy are reported beside agreement
    assert guard["accuracy"]["images"] == 6 and 0 <= guard["accuracy"]["fp32"] <= 1
    assert "INT8 guard: accuracy on the 6 labelled validation images: FP32 " in result.output

    model = validate_model(out)
    assert check_qdq_zero_points(model) > 0
    run_structural_checks(model, attention_fp32=True, qdq=True)  # raises if the attention was quantized

    # the precision step starts from FP32 only
    with pytest.raises(UserInputError, match="is a int8 model"):
        convert_precision(out, tmp_path / "again.onnx", PrecisionConfig(precision="fp16"))
    assert not (tmp_path / "again.onnx").exists()


def test_convert_precision_from_fp32_onnx(tmp_path: Path, tiny_fp32_onnx: Path) -> None:
    """The TensorRT step's entry: an FP32 ONNX in, FP16 ONNX out, metadata carried over, no calibration images."""
    out = tmp_path / "from_onnx.fp16.onnx"
    result = convert_precision(tiny_fp32_onnx, out, PrecisionConfig(precision="fp16"))
    assert result.path == out and out.is_file()
    assert result.precision == "fp16"
    assert _softmax_nodes(out) <= set(result.fp32_nodes)
    assert set(result.timings) >= {"precision", "precision_checks", "precision_verification", "total"}
    assert result.precision_details["range_check"].startswith("random")
    (comparisons,) = result.verification.values()
    assert [c.batch for c in comparisons] == [1, 3] and all(comparisons)

    source = read_onnx_info(tiny_fp32_onnx)
    info = read_onnx_info(out)
    assert info.source_sha256 == source.source_sha256
    assert info.preprocessing == source.preprocessing and info.class_names == source.class_names
    assert (info.min_batch, info.max_batch) == (1, None)
    assert info.extra["parent_sha256"] == sha256_file(tiny_fp32_onnx)
    assert "calibration" not in read_metadata(out)


def test_convert_precision_rejects_bad_sources(tmp_path: Path, tiny_fp32_onnx: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(UserInputError):
        convert_precision(corrupt, tmp_path / "out.onnx", PrecisionConfig(precision="fp16"))
    with pytest.raises(UserInputError, match="'fp16', 'int8' or 'bf16'"):
        convert_precision(tiny_fp32_onnx, tmp_path / "out.onnx", PrecisionConfig(precision="fp32"))
    with pytest.raises(UserInputError, match="needs calibration images"):
        convert_precision(tiny_fp32_onnx, tmp_path / "out.onnx", PrecisionConfig(precision="int8"))
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "bf16"}, "made only through its accuracy guard"),
        ({"precision": "bf16", "calib_data": ".", "calib_method": "max"}, "INT8 options; BF16 runs the FP32 graph"),
        ({"precision": "bf16", "calib_data": ".", "min_agreement": 2.0}, "min_agreement=2.0"),
        ({"precision": "fp32", "min_agreement": 0.9}, "FP16/INT8/BF16 option"),
        ({"precision": "int8"}, "needs calibration images"),
        ({"calib_size": 64}, "fp32"),
        ({"precision": "fp16", "calib_method": "max"}, "INT8 option"),
        ({"precision": "int8", "calib_data": "missing-dir"}, "is neither a directory"),
        ({"rtol": -1.0}, "rtol=-1.0"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_config_rejects_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        PrecisionConfig(**kwargs)


def test_config_calibration_size_minimum(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="calib_size=4"):
        PrecisionConfig(precision="int8", calib_data=tmp_path, calib_size=4)


def test_int8_refusal_names_the_users_own_command_with_qat(
    tmp_path: Path, tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export_at_precision knows the checkpoint: the hint is the user's command; convert_precision names source_name."""
    from dacovid_export.calibration import guard
    from dacovid_export.core.errors import CheckFailedError

    hints: list[str | None] = []

    def refuse(*args: object, qat_hint: str | None = None, **kwargs: object) -> None:
        hints.append(qat_hint)
        raise CheckFailedError("refused")

    monkeypatch.setattr(guard, "guarded_quantize_int8", refuse)  # what the int8 precision's step calls
    config = PrecisionConfig(precision="int8", calib_data=synthetic_dir, calib_size=8, min_agreement=0.95)
    with pytest.raises(CheckFailedError):
        export_at_precision(tiny_checkpoint, tmp_path / "m8.onnx", precision=config)
    hint = hints[-1]
    assert hint is not None and hint.startswith(f"`dacovid-export onnx {tiny_checkpoint} -o ")
    assert f"--calib-data {synthetic_dir} --calib-size 8 --min-agreement 0.95 --qat`" in hint
    assert "m8.onnx" in hint and "--train-data DIR" in hint  # no split.json beside the tiny checkpoint
    with pytest.raises(CheckFailedError):
        convert_precision(tiny_fp32_onnx, tmp_path / "c8.onnx", config)
    assert f"{tiny_checkpoint.name!r}, recorded in this model's metadata" in hints[-1] and "--qat" in hints[-1]


def test_qat_export_reports_agreement_before_and_after_qat(tmp_path: Path, tiny_checkpoint: Path, synthetic_dir: Path) -> None:
    """onnx --qat: the guard report holds the fine-tune's record with post-training INT8's agreement before it."""
    config = PrecisionConfig(
        precision="int8", calib_data=synthetic_dir, calib_size=16, min_agreement=0.0, qat=True, qat_epochs=1,
        train_data=synthetic_dir, cache_dir=tmp_path / "cache",
    )
    result = export_at_precision(tiny_checkpoint, tmp_path / "m8.onnx", precision=config)
    guard = guard_report_of(read_metadata(result.path))
    assert guard is not None and guard.method.startswith("qat + ") and guard.qat.epochs == 1
    before = guard.qat.before
    assert before is not None and before.method == "max" and before.agreement.images == guard.after.images
    assert 0 <= before.agreement.agreement <= 1
    assert before.accuracy is not None and guard.accuracy is not None  # the synthetic images sit in class folders
    assert guard.qat.to_dict()["before_qat"] == before.to_dict()  # the metadata's form, read back the same
    assert any(line.startswith("INT8 guard: agreement with FP32 before QAT (max calibration alone)") for line in guard.lines())

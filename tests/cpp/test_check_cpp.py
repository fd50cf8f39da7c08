"""``dacovid-export check --cpp``: the C++ runtime's outputs judged in the parity table like any artifact."""

from __future__ import annotations

import json
from pathlib import Path

from dacovid_export.cli.main import cli
from tests.helpers.cli import invoke


def _check(*args: object):
    return invoke(cli, ["check", "--no-progress", *args])


def test_passes_against_its_own_checkpoint(dacovid_infer: Path, tiny_checkpoint: Path, tiny_fp32_onnx: Path,
                                           synthetic_dir: Path, tmp_path: Path) -> None:  # fmt: skip
    report = tmp_path / "parity.json"
    result = _check("--checkpoint", tiny_checkpoint, "--images", synthetic_dir, "--cpp", dacovid_infer, "--json", report, tiny_fp32_onnx)
    assert result.exit_code == 0, result.output
    models = json.loads(report.read_text())["models"]
    cpp = [m for m in models if m["backend"].startswith("cpp/openvino/cpu")]
    assert len(models) == 2 and len(cpp) == 1 and cpp[0]["top1_agreement"] == 1.0 and cpp[0]["count"] == 24
    assert "cpp/openvino/cpu" in result.output


def test_fails_against_another_checkpoints_model(dacovid_infer: Path, tiny_checkpoint: Path, make_toy_onnx,
                                                 synthetic_dir: Path, tmp_path: Path) -> None:  # fmt: skip
    other = make_toy_onnx(tmp_path / "other.onnx", source_sha256="0" * 64)
    result = _check("--checkpoint", tiny_checkpoint, "--images", synthetic_dir, "--cpp", dacovid_infer, other)
    assert result.exit_code == 1, result.output
    assert "cpp/openvino/cpu" in result.output and "FAIL" in result.output


def test_wrong_numbers_fail_too(dacovid_infer: Path, tiny_checkpoint: Path, make_toy_onnx, synthetic_dir: Path, tmp_path: Path) -> None:
    """Same source and metadata, other weights (the toy's channel means): the numbers fail, not only the checksum."""
    toy = make_toy_onnx(tmp_path / "toy.onnx", scale=40.0)
    result = _check("--checkpoint", tiny_checkpoint, "--images", synthetic_dir, "--cpp", dacovid_infer, toy)
    assert result.exit_code == 1, result.output


def test_cpp_needs_images_and_an_executable(dacovid_infer: Path, tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path) -> None:
    result = _check("--checkpoint", tiny_checkpoint, "--cpp", dacovid_infer, tiny_fp32_onnx)
    assert result.exit_code == 2 and "--images" in result.output
    result = _check("--checkpoint", tiny_checkpoint, "--images", synthetic_dir, "--cpp", tiny_fp32_onnx, tiny_fp32_onnx)
    assert result.exit_code == 2 and "not an executable file" in result.output

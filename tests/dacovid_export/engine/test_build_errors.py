"""`dacovid-export trt` and build_engine where they must fail: user errors, no TensorRT, no GPU.

The missing-TensorRT tests run where TensorRT or a GPU is absent (this
machine); where both exist they skip, and tests/dacovid_export/engine/test_tensorrt_gpu.py
builds real engines instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dacovid_export.cli.main import cli
from dacovid_export.core.errors import MissingDependencyError, UserInputError
from dacovid_export.engine.build import build_engine
from dacovid_export.engine.config import EngineBuildConfig
from dacovid_export.trt.library import (
    check_tensorrt_version,
    gpu_info,
    import_tensorrt,
    parse_version,
)
from tests.helpers.cli import invoke


def _tensorrt_and_gpu() -> bool:
    try:
        import_tensorrt()
        gpu_info()
    except MissingDependencyError:
        return False
    return True


needs_missing_trt = pytest.mark.skipif(
    _tensorrt_and_gpu(), reason="TensorRT and a GPU are available here: the missing-dependency path cannot happen"
)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_missing_trt
def test_cli_without_tensorrt_one_line_exit_2_no_file(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "tiny.fp32.engine"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "dacovid_export", "trt", str(tiny_fp32_onnx), "--fp32", "-o", str(out), "--runtime", "tensorrt"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "pip install 'dacovid-export[trt]'" in lines[0]
    assert "Traceback" not in proc.stderr
    assert _listing(out.parent) == []  # no engine, no sidecar, no temporary file


@needs_missing_trt
def test_fp16_from_fp32_without_tensorrt_writes_nothing(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    """The environment is checked before the (slow) precision step, so no FP16 ONNX appears either."""
    out = tmp_path / "tiny.fp16.engine"
    result = invoke(cli, ["trt", str(tiny_fp32_onnx), "--fp16", "-o", str(out), "--runtime", "tensorrt"])
    assert result.exit_code == 2
    assert "dacovid-export[trt]" in result.output
    assert _listing(tmp_path) == []


def test_int8_from_fp32_needs_calibration_first(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    result = invoke(cli, ["trt", str(tiny_fp32_onnx), "--int8", "-o", str(tmp_path / "t.engine")])
    assert result.exit_code == 2
    assert "needs calibration images: add --calib-data DIR" in result.output
    assert _listing(tmp_path) == []


def test_calibration_folder_must_exist(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    result = invoke(
        cli, ["trt", str(tiny_fp32_onnx), "--int8", "-o", str(tmp_path / "t.engine"), "--calib-data", str(tmp_path / "nope")]
    )
    assert result.exit_code == 2
    assert "does not exist or is not a folder of images" in result.output


@pytest.mark.parametrize("flags, given", [([], "none"), (["--fp16", "--int8"], "--fp16, --int8")])
def test_exactly_one_precision(tiny_fp32_onnx: Path, tmp_path: Path, flags: list[str], given: str) -> None:
    result = invoke(cli, ["trt", str(tiny_fp32_onnx), *flags, "-o", str(tmp_path / "t.engine")])
    assert result.exit_code == 2
    assert f"give exactly one precision, --fp16, --int8 or --fp32 (given: {given})" in result.output


def test_reduced_precision_onnx_only_builds_its_own_precision(make_toy_onnx, tmp_path: Path) -> None:
    fp16_onnx = make_toy_onnx(tmp_path / "toy.fp16.onnx", precision="fp16")
    for flag in ("--fp32", "--int8"):
        result = invoke(cli, ["trt", str(fp16_onnx), flag, "-o", str(tmp_path / "t.engine")])
        assert result.exit_code == 2
        assert "is a fp16 ONNX and can only become a fp16 engine (use --fp16)" in result.output


def test_calib_data_with_an_already_quantized_onnx(make_toy_onnx, tmp_path: Path) -> None:
    int8_onnx = make_toy_onnx(tmp_path / "toy.int8.onnx", precision="int8")
    result = invoke(
        cli, ["trt", str(int8_onnx), "--int8", "-o", str(tmp_path / "t.engine"), "--calib-data", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "already int8: drop --calib-data" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "{tmp}/t.onnx"], "must end in .engine"),
        (["-o", "{tmp}/t.engine", "--opt-batch", "16"], "need min <= opt <= max"),
        (["-o", "{tmp}/t.engine", "--opt-level", "7"], "optimization levels are 0..5"),
        (["-o", "{tmp}/t.engine", "--workspace", "-1"], "positive number of GiB"),
        (["-o", "{tmp}/t.engine", "--min-batch", "0"], "min_batch=0"),
    ],
)
def test_bad_options_are_one_line(tiny_fp32_onnx: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = invoke(cli, ["trt", str(tiny_fp32_onnx), "--fp32", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_or_foreign_onnx(tmp_path: Path) -> None:
    result = invoke(cli, ["trt", str(tmp_path / "none.onnx"), "--fp32", "-o", str(tmp_path / "t.engine")])
    assert result.exit_code == 2 and "does not exist" in result.output
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx model")
    result = invoke(cli, ["trt", str(bogus), "--fp32", "-o", str(tmp_path / "t.engine")])
    assert result.exit_code == 2 and "error: " in result.output
    assert not (tmp_path / "t.engine").exists()


@needs_missing_trt
def test_library_raises_missing_dependency(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match=r"dacovid-export\[trt\]"):
        build_engine(tiny_fp32_onnx, tmp_path / "t.engine", EngineBuildConfig(precision="fp32", runtime="tensorrt"), progress=False)
    assert _listing(tmp_path) == []


def test_import_tensorrt_message_when_missing() -> None:
    try:
        import_tensorrt()
    except MissingDependencyError as exc:
        text = str(exc)
        assert "pip install 'dacovid-export[trt]'" in text and "\n" not in text
    else:
        pytest.skip("TensorRT is importable here")


def test_gpu_info_without_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        info = gpu_info()
        assert len(info.compute_capability) == 2 and info.name
        return
    with pytest.raises(MissingDependencyError, match="no CUDA GPU is visible"):
        gpu_info()


def test_gpu_device_strings() -> None:
    with pytest.raises(UserInputError, match="use 'cuda' or 'cuda:N'"):
        gpu_info("cpu")


def test_version_policy() -> None:
    assert parse_version("10.8.0.43") == (10, 8, 0, 43)
    assert parse_version("11.0.0rc1") == (11, 0, 0)
    assert parse_version(" 11.4 ") == (11, 4)
    with pytest.raises(UserInputError):
        parse_version("eleven")
    assert check_tensorrt_version("10.8.0.43") == (10, 8, 0, 43)
    assert check_tensorrt_version("11.1.0.106")[0] == 11
    with pytest.raises(MissingDependencyError, match="TensorRT 10.7.0.23 is installed but dacovid-export needs TensorRT >= 10.8"):
        check_tensorrt_version("10.7.0.23")
    with pytest.raises(MissingDependencyError):
        check_tensorrt_version("8.6.1")


def test_build_config_defaults_and_validation(tmp_path: Path) -> None:
    config = EngineBuildConfig(precision="fp16")
    assert (config.min_batch, config.opt_batch, config.max_batch) == (1, 8, 8)
    assert config.workspace_bytes == 4 * 2**30
    assert EngineBuildConfig(precision="int8", max_batch=4, opt_batch=1).opt_batch == 1
    with pytest.raises(UserInputError, match="precision='bf16'"):
        EngineBuildConfig(precision="bf16")
    with pytest.raises(UserInputError, match="max_batch=True"):
        EngineBuildConfig(precision="fp32", max_batch=True)  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="is not a file"):
        EngineBuildConfig(precision="fp32", timing_cache=tmp_path)


def test_int8_qat_is_refused_with_the_two_commands_that_do_it(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    # QAT fine-tunes the checkpoint; trt starts from an ONNX: one line naming `onnx ... --qat`, then `trt` on its output
    out = tmp_path / "t.engine"
    result = invoke(cli, ["trt", str(tiny_fp32_onnx), "--int8", "--qat", "-o", str(out), "--calib-data", str(tmp_path)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    int8_onnx = tmp_path / "t.int8.onnx"
    assert f"--precision int8 --calib-data {tmp_path} --qat`" in errors[0]
    assert f"`dacovid-export trt {int8_onnx} --int8 -o {out}`" in errors[0]
    assert _listing(tmp_path) == []

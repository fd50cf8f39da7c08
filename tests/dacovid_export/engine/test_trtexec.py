"""The trtexec command for TensorRT 10.x and 11.x, and `trt --print-trtexec` (no TensorRT needed)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.engine.config import EngineBuildConfig, precision_onnx_path
from dacovid_export.engine.trtexec import (
    format_command,
    trtexec_command,
    trtexec_equivalent,
)
from tests.helpers.cli import invoke

COMMON = dict(input_name="input", image_size=224, min_batch=1, opt_batch=4, max_batch=8)


def test_tensorrt_10_flags_exactly() -> None:
    cmd = trtexec_command(
        "m.fp16.onnx", "m.fp16.engine", trt_major=10, workspace_gib=4, opt_level=5,
        timing_cache="cache.bin", hardware_compatible=True, **COMMON,
    )
    assert cmd == [
        "trtexec",
        "--onnx=m.fp16.onnx",
        "--stronglyTyped",
        "--minShapes=input:1x3x224x224",
        "--optShapes=input:4x3x224x224",
        "--maxShapes=input:8x3x224x224",
        "--memPoolSize=workspace:4096M",
        "--builderOptimizationLevel=5",
        "--timingCacheFile=cache.bin",
        "--hardwareCompatibilityLevel=ampere+",
        "--saveEngine=m.fp16.engine",
        "--skipInference",
    ]


def test_tensorrt_11_flags_exactly() -> None:
    cmd = trtexec_command("m.int8.onnx", "m.int8.engine", trt_major=11, workspace_gib=1.5, opt_level=3, **COMMON)
    assert cmd == [
        "trtexec",
        "--onnx=m.int8.onnx",
        "--minShapes=input:1x3x224x224",
        "--optShapes=input:4x3x224x224",
        "--maxShapes=input:8x3x224x224",
        "--memPoolSize=workspace:1536M",
        "--builderOptimizationLevel=3",
        "--saveEngine=m.int8.engine",
        "--skipInference",
    ]


@pytest.mark.parametrize("major", [10, 11])
def test_no_weak_typing_flags(major: int) -> None:
    """TensorRT 11 removed them; on 10 they would let TensorRT choose precisions itself."""
    cmd = trtexec_command("m.onnx", "m.engine", trt_major=major, **COMMON)
    for flag in ("--fp16", "--int8", "--best", "--bf16", "--calib"):
        assert not any(arg.startswith(flag) for arg in cmd)
    assert ("--stronglyTyped" in cmd) == (major == 10)


def test_input_name_with_colon_is_quoted() -> None:
    cmd = trtexec_command("m.onnx", "m.engine", trt_major=11, **{**COMMON, "input_name": "input:0"})
    assert "--minShapes='input:0':1x3x224x224" in cmd
    with pytest.raises(UserInputError, match="cannot be written"):
        trtexec_command("m.onnx", "m.engine", trt_major=11, **{**COMMON, "input_name": "a,b"})


def test_fractional_workspace_and_quoting() -> None:
    cmd = trtexec_command("my model.onnx", "out.engine", trt_major=11, workspace_gib=0.3, **COMMON)
    assert "--memPoolSize=workspace:307.2M" in cmd
    assert shlex.split(format_command(cmd))[1] == "--onnx=my model.onnx"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"trt_major": 9}, "trt_major=9"),
        ({"opt_batch": 16}, "min <= opt <= max"),
        ({"opt_level": 6}, "0..5"),
        ({"workspace_gib": 0}, "positive number"),
        ({"image_size": 0}, "image_size=0"),
    ],
)
def test_bad_arguments(changes: dict, message: str) -> None:
    kwargs = {**COMMON, "trt_major": 11, **changes}
    with pytest.raises(UserInputError, match=message):
        trtexec_command("m.onnx", "m.engine", **kwargs)


def test_precision_onnx_path() -> None:
    assert precision_onnx_path("out/m.fp16.engine", "fp16") == Path("out/m.fp16.onnx")
    assert precision_onnx_path("out/m.engine", "int8") == Path("out/m.int8.onnx")


def test_equivalent_for_an_fp32_onnx(make_toy_onnx, tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    config = EngineBuildConfig(precision="fp32", max_batch=4, opt_batch=2, workspace_gib=2)
    commands = trtexec_equivalent(onnx_path, tmp_path / "toy.engine", config, trt_major=11)
    assert [major for major, _ in commands] == [11]
    cmd = commands[0][1]
    assert cmd[1] == f"--onnx={onnx_path}"
    assert "--maxShapes=input:4x3x64x64" in cmd and "--optShapes=input:2x3x64x64" in cmd
    assert "--memPoolSize=workspace:2048M" in cmd
    # an FP16 engine from an FP32 ONNX is built from the ONNX the precision step writes
    fp16 = trtexec_equivalent(onnx_path, tmp_path / "toy.fp16.engine", EngineBuildConfig(precision="fp16"), trt_major=10)
    assert fp16[0][1][1] == f"--onnx={tmp_path / 'toy.fp16.onnx'}"


def test_cli_print_trtexec_without_tensorrt(make_toy_onnx, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    out = tmp_path / "toy.engine"
    result = invoke(
        cli, ["trt", str(onnx_path), "--fp32", "-o", str(out), "--max-batch", "4", "--print-trtexec", "--trt-major", "10"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    args = shlex.split(lines[0])
    assert args[0] == "trtexec" and "--stronglyTyped" in args and f"--saveEngine={out}" in args
    assert not out.exists()


def test_cli_print_trtexec_both_majors_when_not_installed(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    import dacovid_export.trt.library as api

    monkeypatch.setattr(api, "installed_tensorrt_version", lambda: None)
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    result = invoke(cli, ["trt", str(onnx_path), "--fp32", "-o", str(tmp_path / "t.engine"), "--print-trtexec"])
    assert result.exit_code == 0, result.output
    assert "# TensorRT 10.x" in result.output and "# TensorRT 11.x" in result.output
    assert result.output.count("trtexec --onnx=") == 2


def test_cli_trt_major_needs_print(make_toy_onnx, tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    result = invoke(cli, ["trt", str(onnx_path), "--fp32", "-o", str(tmp_path / "t.engine"), "--trt-major", "11"])
    assert result.exit_code == 2
    assert "--trt-major only applies to --print-trtexec" in result.output

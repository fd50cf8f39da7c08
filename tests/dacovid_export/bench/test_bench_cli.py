"""`dacovid-bench` on the command line: one-line errors with exit status 2, the table and the files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers.runtimes import tensorrt_importable


def _one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_cli_unknown_backend_is_one_line_exit_2(toy_onnx: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = CliRunner().invoke(bench, [str(toy_onnx), "--backend", "nosuch"])
    assert result.exit_code == 2
    assert "nosuch" in _one_line_error(result)


@pytest.mark.skipif(tensorrt_importable(), reason="TensorRT or TensorRT-RTX is installed here")
def test_cli_tensorrt_not_installed_is_one_line_exit_2(toy_onnx: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = CliRunner().invoke(bench, [str(toy_onnx), "--backend", "tensorrt"])
    assert result.exit_code == 2
    assert "pip install" in _one_line_error(result)


def test_cli_batch_over_engine_limit_is_one_line_exit_2(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.cli.main import cli

    static = make_toy_onnx(tmp_path / "static1.onnx", batch=1)
    result = CliRunner().invoke(cli, ["bench", str(static), "--batch", "1,8", "--no-progress"])
    assert result.exit_code == 2
    assert "batch size 8" in _one_line_error(result)


def test_cli_iterations_and_duration_conflict(toy_onnx: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = CliRunner().invoke(bench, [str(toy_onnx), "--iterations", "3", "--duration", "1"])
    assert result.exit_code == 2
    assert "not both" in _one_line_error(result)


def test_cli_writes_table_and_files(toy_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    args = [str(toy_onnx), "--batch", "1,3", "--iterations", "2", "--warmup", "0", "--device", "cpu", "--no-progress",
            "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv"), "--plot", str(tmp_path / "o.png")]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "| toy.onnx | onnxruntime | fp32 |" in result.output
    records = json.loads((tmp_path / "o.json").read_text())["records"]
    assert [r["batch"] for r in records] == [1, 3]
    assert all(math.isfinite(r["p99_ms"]) for r in records)
    assert (tmp_path / "o.csv").is_file() and (tmp_path / "o.png").is_file()


def test_cli_plot_must_be_png(toy_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = CliRunner().invoke(bench, [str(toy_onnx), "--plot", str(tmp_path / "o.svg")])
    assert result.exit_code == 2
    assert ".png" in _one_line_error(result)


def test_bench_to_files_checks_outputs_before_timing(toy_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.bench.config import BenchConfig
    from dacovid_export.bench.run import bench_to_files
    from dacovid_export.core.errors import UserInputError

    config = BenchConfig(batch_sizes=(1,), iterations=2, warmup=0, device="cpu", progress=False)
    before = toy_onnx.read_bytes()
    with pytest.raises(UserInputError, match="--json"):
        bench_to_files([str(toy_onnx)], config, json=toy_onnx)
    assert toy_onnx.read_bytes() == before
    with pytest.raises(UserInputError, match="the plot is a PNG"):
        bench_to_files([str(toy_onnx)], config, plot=tmp_path / "o.svg")
    with pytest.raises(UserInputError, match="give ARTIFACT files"):
        bench_to_files([], config)
    result, written = bench_to_files([str(toy_onnx)], config, csv=tmp_path / "o.csv")
    assert written == [tmp_path / "o.csv"] and [r.batch for r in result.records] == [1]

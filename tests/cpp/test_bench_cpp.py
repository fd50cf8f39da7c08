"""``dacovid-bench --cpp``: C++ and Python end-to-end latency in one table (figures, not a timed assertion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.bench.cpp import CppBenchConfig
from dacovid_export.cli.bench_cmd import bench
from dacovid_export.core.errors import UserInputError
from tests.helpers.cli import invoke


def test_prints_both_latencies_and_their_ratio(dacovid_infer: Path, tiny_fp32_onnx: Path, synthetic_dir: Path) -> None:
    result = invoke(bench, ["--cpp", dacovid_infer, "--images", synthetic_dir, "--batch", "1,2", "--cpp-images", "4",
                            "--iterations", "1", tiny_fp32_onnx])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and all(row.rstrip().endswith("x |") for row in rows)
    assert "cpp/openvino/cpu (inference precision f32)" in result.output


def test_config_and_cli_refusals(dacovid_infer: Path, tiny_fp32_onnx: Path, tiny_checkpoint: Path, synthetic_dir: Path) -> None:
    with pytest.raises(UserInputError, match="exceeds the 4 images"):
        CppBenchConfig(str(dacovid_infer), str(tiny_fp32_onnx), str(synthetic_dir), (8,), count=4)
    with pytest.raises(UserInputError, match="ONNX model"):
        CppBenchConfig(str(dacovid_infer), str(tiny_checkpoint), str(synthetic_dir))
    result = invoke(bench, ["--cpp", dacovid_infer, tiny_fp32_onnx])
    assert result.exit_code == 2 and "--images" in result.output

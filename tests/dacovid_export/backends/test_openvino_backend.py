"""OpenVINO backend: FP32 really FP32, BF16 only when asked, and `auto` choosing it for INT8 on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dacovid_export.backends.registry import auto_backend, open_backend
from dacovid_export.core.errors import UserInputError

pytest.importorskip("openvino")
from dacovid_export.core.openvino_model import cpu_supports_bf16  # noqa: E402

S = 64


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, S, S)).astype(np.float32)


def test_fp32_equals_onnxruntime_within_1e4(tiny_fp32_onnx: Path) -> None:
    batch = _batch(2)
    with open_backend(tiny_fp32_onnx, backend="onnxruntime", device="cpu") as ort_backend:
        reference = ort_backend.run(batch)
    with open_backend(tiny_fp32_onnx, backend="openvino", threads=2) as ov_backend:
        assert ov_backend.name == "openvino" and ov_backend.precision == "fp32"
        assert "inference precision f32" in ov_backend.describe()
        # the compiled model's own setting, not just what was asked for
        assert str(ov_backend._runner.compiled.get_property("INFERENCE_PRECISION_HINT")).endswith("f32") or (
            "float32" in repr(ov_backend._runner.compiled.get_property("INFERENCE_PRECISION_HINT"))
        )
        out = ov_backend.run(batch)
    np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)


def test_bf16_is_its_own_precision_and_only_where_supported(tiny_fp32_onnx: Path) -> None:
    if not cpu_supports_bf16():
        with pytest.raises(UserInputError, match="no BF16 support"):
            open_backend(tiny_fp32_onnx, backend="openvino", inference_precision="bf16")
        return
    with open_backend(tiny_fp32_onnx, backend="openvino", inference_precision="bf16") as backend:
        assert backend.precision == "bf16" and "inference precision bf16" in backend.describe()
        assert backend.run(_batch(1)).shape == (1, 3)


def test_openvino_option_errors(tiny_fp32_onnx: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(UserInputError, match="inference_precision='f16'"):
        open_backend(tiny_fp32_onnx, backend="openvino", inference_precision="f16")
    with pytest.raises(UserInputError, match="CPU only"):
        open_backend(tiny_fp32_onnx, backend="openvino", device="cuda")
    with pytest.raises(UserInputError, match="use backend 'torch'"):
        open_backend(tiny_checkpoint, backend="openvino")
    with pytest.raises(UserInputError, match="use backend 'onnxruntime' or 'openvino'"):
        open_backend(tiny_fp32_onnx, backend="torch")
    with pytest.raises(UserInputError, match="threads=0"):
        open_backend(tiny_fp32_onnx, backend="openvino", threads=0)


def test_auto_picks_openvino_for_int8_on_the_cpu_and_says_so(make_toy_onnx, tmp_path: Path, capsys) -> None:
    int8 = make_toy_onnx(tmp_path / "toy.int8.onnx", precision="int8")
    fp32 = make_toy_onnx(tmp_path / "toy.onnx")
    backend, why = auto_backend(int8, "cpu")
    assert backend == "openvino" and "INT8" in why and "OpenVINO" in why
    assert auto_backend(fp32, "cpu")[0] in ("onnxruntime", "openvino")  # FP32: measured, test_cpu_choice.py
    with open_backend(int8, device="cpu") as opened:
        assert opened.name == "openvino"
    assert "using OpenVINO" in capsys.readouterr().err
    with open_backend(int8, backend="onnxruntime", device="cpu") as opened:
        assert opened.name == "onnxruntime"  # an explicit choice is kept


def test_predictor_serves_int8_with_openvino_on_the_cpu(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.serve.predictor import Predictor

    int8 = make_toy_onnx(tmp_path / "toy.int8.onnx", precision="int8")
    with Predictor.from_path(int8, device="cpu") as predictor:
        assert predictor._backend.name == "openvino"


def test_bench_times_int8_on_onnxruntime_and_openvino(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.bench.config import BenchConfig
    from dacovid_export.bench.report import cpu_int8_summary, format_markdown
    from dacovid_export.bench.run import run_benchmark

    fp32 = make_toy_onnx(tmp_path / "toy.onnx")
    int8 = make_toy_onnx(tmp_path / "toy.int8.onnx", precision="int8")
    result = run_benchmark([fp32, int8], BenchConfig(device="cpu", iterations=2, warmup=1, progress=False))
    rows = {(r.backend, r.precision) for r in result.records}
    assert rows == {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8")}
    (summary,) = cpu_int8_summary(result.records)
    assert set(summary["int8_p50_ms"]) == {"onnxruntime", "openvino"}
    assert summary["ratio"] == min(summary["int8_p50_ms"].values()) / summary["onnxruntime_fp32_p50_ms"]
    text = format_markdown(result)
    assert "CPU INT8, batch 1" in text and "inference precision explicitly" in text

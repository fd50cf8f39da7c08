"""INT8 Q/DQ step on the tiny model: S8S8, per-channel weights, attention left in FP32, cached calibration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.calibration import (
    PrecisionResult,
    default_cache_dir,
    load_calibration_set,
    quantize_int8,
)
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import Preprocessing
from tests.helpers.onnx_graphs import qdq_model
from tests.helpers.precision import SOURCE_METADATA, run_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.onnx.quantization")
pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402

import dacovid_export.calibration.int8 as int8_module  # noqa: E402


@pytest.fixture(scope="module")
def int8_run(torch_fp32_onnx: Path, tiny_calibration_set, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("int8")
    cache = root / "cache"
    first = quantize_int8(torch_fp32_onnx, root / "first.onnx", calibration=tiny_calibration_set, cache_dir=cache)
    return {"path": root / "first.onnx", "result": first, "cache": cache, "root": root}


def _fed_by_dequantize(model: "onnx.ModelProto", tensor: str) -> bool:
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get(tensor)
    while node is not None and node.op_type in ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


def test_qdq_is_symmetric_signed_int8_with_per_channel_weights(int8_run) -> None:
    model = onnx.load(str(int8_run["path"]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(q) > 50 and len(dq) > 50
    for node in q + dq:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    per_channel = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        weight_dq = next(n for n in dq if n.output[0] == conv.input[1])
        weight_q = next(n for n in q if n.output[0] == weight_dq.input[0])
        weight = inits[weight_q.input[0]]
        scale = inits[weight_q.input[1]]
        assert scale.shape == (weight.shape[0],), conv.name  # one scale per output channel
        per_channel += 1
    assert per_channel == sum(n.op_type == "Conv" for n in model.graph.node)
    assert int8_run["result"].details["qdq"]["per_channel_weights"] == per_channel


def test_attention_is_not_quantized_and_stays_fp32(int8_run) -> None:
    model = onnx.load(str(int8_run["path"]))
    result: PrecisionResult = int8_run["result"]
    attention = [n for n in model.graph.node if n.op_type in ("MatMul", "Softmax")]
    assert len(attention) == 6
    for node in attention:
        assert not any(_fed_by_dequantize(model, t) for t in node.input), f"{node.name} is quantized"
        assert node.name in result.fp32_nodes
    # high_precision_dtype="fp32": nothing was cast to FP16
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert not [n for n in model.graph.node if n.op_type == "Cast"]
    assert {p.key: p.value for p in model.metadata_props}.items() >= SOURCE_METADATA.items()
    onnx.checker.check_model(model, full_check=True)


def test_int8_model_runs_in_onnxruntime_close_to_fp32(int8_run, torch_fp32_onnx, tiny_calibration_set) -> None:
    x = np.ascontiguousarray(tiny_calibration_set.array[:3])
    reference = run_onnx(torch_fp32_onnx, x)
    logits = run_onnx(int8_run["path"], x)
    assert logits.shape == reference.shape and np.isfinite(logits).all()
    # INT8 is lossy: a loose bound that still catches a broken CAM (docs/design.md: logits off by 3x)
    assert np.abs(logits - reference).max() < 0.25 * np.abs(reference).max()


def test_second_call_reuses_the_cache_without_calibrating(int8_run, torch_fp32_onnx, tiny_calibration_set, monkeypatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("calibration ran although the cache holds this result")

    monkeypatch.setattr(int8_module, "_calibrate", must_not_run)
    out = int8_run["root"] / "second.onnx"
    second = quantize_int8(torch_fp32_onnx, out, calibration=tiny_calibration_set, cache_dir=int8_run["cache"])
    first = int8_run["result"]
    assert second.cache_hit and not first.cache_hit
    assert out.read_bytes() == int8_run["path"].read_bytes()
    assert second.details["cache"]["key"] == first.details["cache"]["key"]
    assert second.fp32_nodes == first.fp32_nodes


def test_cache_key_covers_method_images_and_damage(int8_run, torch_fp32_onnx, tiny_calibration_set, synthetic_dir, monkeypatch) -> None:
    calls: list[str] = []
    cached_model = onnx.load(str(int8_run["path"]))

    def fake_calibrate(src, array, method, excluded):
        calls.append(method)
        return cached_model

    monkeypatch.setattr(int8_module, "_calibrate", fake_calibrate)
    out = int8_run["root"] / "other.onnx"
    cache = int8_run["root"] / "cache_copy"
    assert not quantize_int8(torch_fp32_onnx, out, calibration=tiny_calibration_set, method="max", cache_dir=cache).cache_hit
    other_images = load_calibration_set(synthetic_dir, Preprocessing(image_size=64), size=12, seed=5)
    assert not quantize_int8(torch_fp32_onnx, out, calibration=other_images, cache_dir=cache).cache_hit
    assert quantize_int8(torch_fp32_onnx, out, calibration=other_images, cache_dir=cache).cache_hit
    assert calls == ["max", "entropy"]
    # a damaged entry is recalibrated, not trusted
    result = quantize_int8(torch_fp32_onnx, out, calibration=other_images, cache_dir=cache)
    Path(result.details["cache"]["path"]).write_bytes(b"garbage")
    assert not quantize_int8(torch_fp32_onnx, out, calibration=other_images, cache_dir=cache).cache_hit
    assert calls == ["max", "entropy", "entropy"]


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "dacovid-export" / "calibration"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "dacovid-export" / "calibration"


def test_bad_arguments_are_user_errors(torch_fp32_onnx, tiny_calibration_set, synthetic_dir, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    with pytest.raises(UserInputError, match="calibration method 'minmax'"):
        quantize_int8(torch_fp32_onnx, out, calibration=tiny_calibration_set, method="minmax", cache_dir=tmp_path)
    with pytest.raises(UserInputError, match="CalibrationSet"):
        quantize_int8(torch_fp32_onnx, out, calibration=tiny_calibration_set.array, cache_dir=tmp_path)  # type: ignore[arg-type]
    wrong = load_calibration_set(synthetic_dir, Preprocessing(image_size=96), size=8)
    with pytest.raises(UserInputError, match="does not fit the model input"):
        quantize_int8(torch_fp32_onnx, out, calibration=wrong, cache_dir=tmp_path)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(torch_fp32_onnx.read_bytes()[:5000])
    with pytest.raises(UserInputError, match="is not an ONNX model"):
        quantize_int8(corrupt, out, calibration=tiny_calibration_set, cache_dir=tmp_path)
    assert not out.exists()


def test_already_quantized_source_is_refused(int8_run, tiny_calibration_set, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="already quantized"):
        quantize_int8(int8_run["path"], tmp_path / "again.onnx", calibration=tiny_calibration_set, cache_dir=tmp_path)


def test_checker_flags_asymmetric_or_unsigned_qdq() -> None:
    from onnx import TensorProto

    from dacovid_export.calibration.qdq import inspect_qdq

    problems = inspect_qdq(qdq_model(128, TensorProto.UINT8)).problems
    assert len(problems) == 2 and all("uint8" in p for p in problems)
    assert all("non-zero zero point" in p for p in inspect_qdq(qdq_model(3, TensorProto.INT8)).problems)


def test_precision_result_is_frozen(int8_run) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        int8_run["result"].precision = "fp32"  # type: ignore[misc]

"""FP16 AutoCast step on the tiny model: runs in ONNX Runtime, matches FP32, attention stays FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dacovid_export.calibration import PrecisionResult, convert_fp16
from dacovid_export.core.errors import CheckFailedError, UserInputError
from tests.helpers.precision import SOURCE_METADATA, run_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.onnx.autocast")
pytest.importorskip("onnxruntime")


def _output_types(model: "onnx.ModelProto") -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {init.name: init.data_type for init in inferred.graph.initializer}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _attention_nodes(model: "onnx.ModelProto") -> list["onnx.NodeProto"]:
    """The Softmax nodes and the MatMuls next to them (through Transpose/Reshape/Cast), found independently."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found = []
    for softmax in (n for n in model.graph.node if n.op_type == "Softmax"):
        found.append(softmax)
        node = producer[softmax.input[0]]
        while node.op_type in ("Cast", "Transpose", "Reshape"):
            node = producer[node.input[0]]
        found.append(node)
        node = consumers[softmax.output[0]][0]
        while node.op_type in ("Cast", "Transpose", "Reshape"):
            node = consumers[node.output[0]][0]
        found.append(node)
    return found


@pytest.fixture(scope="module")
def fp16_models(torch_fp32_onnx: Path, tiny_calibration_set, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("fp16")
    plain = convert_fp16(torch_fp32_onnx, out / "plain.onnx")
    calibrated = convert_fp16(torch_fp32_onnx, out / "calibrated.onnx", calibration=tiny_calibration_set.array)
    return {"plain": (out / "plain.onnx", plain), "calibrated": (out / "calibrated.onnx", calibrated)}


@pytest.mark.parametrize("variant", ["plain", "calibrated"])
def test_fp16_model_matches_fp32_in_onnxruntime(fp16_models, variant, torch_fp32_onnx, tiny_calibration_set) -> None:
    path, result = fp16_models[variant]
    x = np.ascontiguousarray(tiny_calibration_set.array[:3])
    reference = run_onnx(torch_fp32_onnx, x)
    logits = run_onnx(path, x)
    assert logits.dtype == np.float32 and logits.shape == reference.shape
    np.testing.assert_allclose(logits, reference, atol=0.05, rtol=0.01)
    assert (logits.argmax(1) == reference.argmax(1)).all()
    assert isinstance(result, PrecisionResult) and result.precision == "fp16" and not result.cache_hit
    assert result.details["range_check"] == ("calibration images" if variant == "calibrated" else "random inputs in [-1, 1]")


@pytest.mark.parametrize("variant", ["plain", "calibrated"])
def test_attention_stays_fp32_and_the_rest_is_fp16(fp16_models, variant) -> None:
    path, result = fp16_models[variant]
    model = onnx.load(str(path))
    types = _output_types(model)
    attention = _attention_nodes(model)
    assert sorted(n.op_type for n in attention) == ["MatMul"] * 4 + ["Softmax"] * 2
    for node in attention:
        assert types[node.output[0]] == onnx.TensorProto.FLOAT, f"{node.name} is not FP32"
        assert node.name in result.fp32_nodes
    # the bulk of the network really is FP16: conv weights are stored as float16
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    inits = {i.name: i.data_type for i in model.graph.initializer}
    half = sum(inits.get(w) == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert half == len(conv_weights) > 50
    assert not [n.name for n in model.graph.node if n.op_type == "Conv" and n.name in result.fp32_nodes]
    # callers feed and read float32, as with the FP32 model
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]
    # the source's metadata survives the conversion
    assert {p.key: p.value for p in model.metadata_props}.items() >= SOURCE_METADATA.items()
    onnx.checker.check_model(model, full_check=True)


def test_range_check_uses_at_most_max_range_images(torch_fp32_onnx, tiny_calibration_set, tmp_path, capsys) -> None:
    result = convert_fp16(torch_fp32_onnx, tmp_path / "m.onnx", calibration=tiny_calibration_set.array, max_range_images=3)
    assert result.details["range_check_images"] == 3 and result.details["calibration_images"] == 12
    assert "using 3 of the 12 calibration images" in capsys.readouterr().err


def test_corrupt_source_is_a_user_error_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model at all")
    out = tmp_path / "out.onnx"
    with pytest.raises(UserInputError, match="is not an ONNX model"):
        convert_fp16(bad, out)
    with pytest.raises(UserInputError, match="does not exist"):
        convert_fp16(tmp_path / "missing.onnx", out)
    assert list(tmp_path.iterdir()) == [bad]


def test_bad_calibration_and_output_arguments(torch_fp32_onnx: Path, tmp_path: Path) -> None:
    wrong_size = np.zeros((2, 3, 32, 32), dtype=np.float32)
    with pytest.raises(UserInputError, match="does not fit the model input"):
        convert_fp16(torch_fp32_onnx, tmp_path / "o.onnx", calibration=wrong_size)
    with pytest.raises(UserInputError, match="float32"):
        convert_fp16(torch_fp32_onnx, tmp_path / "o.onnx", calibration=np.zeros((2, 3, 64, 64)))
    with pytest.raises(UserInputError, match="is the source model"):
        convert_fp16(torch_fp32_onnx, torch_fp32_onnx)
    with pytest.raises(UserInputError, match=r"\.onnx"):
        convert_fp16(torch_fp32_onnx, tmp_path / "o.engine")
    assert not any(tmp_path.iterdir())


def test_a_model_that_fails_the_checker_is_not_written(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from dacovid_export.calibration.graph import write_checked_model

    # Relu reads a tensor nothing produces
    graph = helper.make_graph(
        [helper.make_node("Relu", ["ghost"], ["y"], name="r")],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous content")
    with pytest.raises(CheckFailedError, match="onnx.checker"):
        write_checked_model(helper.make_model(graph), out)
    assert out.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]

"""Source-model checks and the structural attention finder."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError

onnx = pytest.importorskip("onnx")

from dacovid_export.artifacts.onnx_graph import find_attention_chains  # noqa: E402
from dacovid_export.calibration.graph import load_source_model  # noqa: E402
from dacovid_export.calibration.int8 import int8_exclusions  # noqa: E402


def test_finds_pam_and_cam_chains(torch_fp32_onnx: Path) -> None:
    source = load_source_model(torch_fp32_onnx)
    assert source.input_name == "input" and source.input_shape[1:] == (3, 64, 64)
    assert isinstance(source.input_shape[0], str)  # dynamic batch
    ops = {n.name: n.op_type for n in source.model.graph.node}
    chains = find_attention_chains(source.model)
    assert len(chains) == 2
    for chain in chains:
        assert ops[chain.energy_matmul] == ops[chain.output_matmul] == "MatMul"
        assert ops[chain.softmax] == "Softmax"
        assert chain.nodes[0] == chain.energy_matmul and chain.nodes[-1] == chain.output_matmul
        assert {ops[n] for n in chain.entry_nodes} <= {"Reshape", "Transpose"}
    # PAM reads three 1x1 conv outputs (Q, K, V); CAM reads the reduced feature map A (a Relu)
    entry_ops = sorted(sorted(ops[p.name] for p in source.model.graph.node if set(p.output) & set(c.entry_tensors)) for c in chains)
    assert entry_ops == [["Conv", "Conv", "Conv"], ["Relu"]]
    # INT8 also keeps the CAM residual Add (it shares A with the chain) out of quantization
    extra = [n for n in int8_exclusions(source.model, chains) if not any(n in c.nodes or n in c.entry_nodes for c in chains)]
    assert [ops[n] for n in extra] == ["Add"]


def test_external_weights_are_part_of_the_source_hash(torch_fp32_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(torch_fp32_onnx))
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.onnx.data")
    first = load_source_model(path)
    assert first.sha256 != load_source_model(torch_fp32_onnx).sha256
    data = tmp_path / "ext.onnx.data"
    blob = bytearray(data.read_bytes())
    blob[-1] ^= 0xFF  # change one weight byte, leave the .onnx file alone
    data.write_bytes(bytes(blob))
    assert load_source_model(path).sha256 != first.sha256
    data.unlink()
    with pytest.raises(UserInputError, match=r"ext\.onnx\.data.*missing"):
        load_source_model(path)


def test_source_must_be_an_fp32_image_model(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    def save(inputs, name: str, *shape: int) -> Path:
        graph = helper.make_graph(
            [helper.make_node("Identity", [inputs[0].name], ["y"], name="id")],
            "g",
            inputs,
            [helper.make_tensor_value_info("y", inputs[0].type.tensor_type.elem_type, ["n", *shape])],
        )
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    half = save([helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 3, 8, 8])], "half.onnx", 3, 8, 8)
    with pytest.raises(UserInputError, match="FLOAT16 input.*FP32 export"):
        load_source_model(half)
    flat = save([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])], "flat.onnx", 10)
    with pytest.raises(UserInputError, match=r"N x 3 x S x S"):
        load_source_model(flat)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(UserInputError, match="not a usable ONNX model"):
        load_source_model(empty)

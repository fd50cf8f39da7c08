"""The graph anatomy every stage shares: the attention finder in FP32, FP16 and Q/DQ INT8 shapes; external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dacovid_export.artifacts.onnx_graph import (  # noqa: E402
    attention_feeders,
    external_data_locations,
    find_attention_chains,
    node_id,
)
from tests.helpers.onnx_graphs import two_attention_model  # noqa: E402


def _insert_between(model: "onnx.ModelProto", tensor: str, nodes: list["onnx.NodeProto"], out: str) -> None:
    """Route ``tensor`` through ``nodes`` (ending in ``out``) for every reader of ``tensor`` (in place)."""
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == tensor:
                node.input[i] = out
    producer = next(k for k, n in enumerate(graph.node) if tensor in n.output)
    for offset, node in enumerate(nodes, start=1):
        graph.node.insert(producer + offset, node)


def test_finds_both_chains_in_fp32() -> None:
    chains = find_attention_chains(two_attention_model())
    assert [(c.energy_matmul, c.softmax, c.output_matmul) for c in chains] == [
        ("pam_mm1", "pam_sm", "pam_mm2"),
        ("cam_mm1", "cam_sm", "cam_mm2"),
    ]
    pam = chains[0]
    assert pam.nodes == ("pam_mm1", "pam_sm", "pam_t2", "pam_mm2")
    assert pam.core_nodes() == ("pam_mm1", "pam_sm", "pam_mm2")
    assert pam.entry_nodes == ("pam_t",) and pam.entry_tensors == ("x",)


def test_finds_chains_through_fp16_casts_and_scaling() -> None:
    # an FP16 conversion's Casts around the softmax and a 1/sqrt(d) scaling must not hide the chain
    model = two_attention_model()
    scale = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "scale")
    model.graph.initializer.append(scale)
    _insert_between(model, "pam_energy", [
        helper.make_node("Mul", ["pam_energy", "scale"], ["pam_scaled"], name="pam_scale"),
        helper.make_node("Cast", ["pam_scaled"], ["pam_e16"], to=TensorProto.FLOAT16, name="pam_cast16"),
        helper.make_node("Cast", ["pam_e16"], ["pam_e32"], to=TensorProto.FLOAT, name="pam_cast32"),
    ], "pam_e32")
    chains = find_attention_chains(model)
    assert len(chains) == 2
    assert chains[0].nodes == ("pam_mm1", "pam_scale", "pam_cast16", "pam_cast32", "pam_sm", "pam_t2", "pam_mm2")


def test_finds_chains_through_qdq_pairs() -> None:
    # a Q/DQ pair between the softmax and the second MatMul (an INT8 model that quantized the attention)
    model = two_attention_model()
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(0.01, dtype=np.float32), "s"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "zp"),
    ])
    _insert_between(model, "cam_att", [
        helper.make_node("QuantizeLinear", ["cam_att", "s", "zp"], ["cam_q"], name="cam_q"),
        helper.make_node("DequantizeLinear", ["cam_q", "s", "zp"], ["cam_dq"], name="cam_dq"),
    ], "cam_dq")
    chains = find_attention_chains(model)
    assert len(chains) == 2
    assert chains[1].nodes == ("cam_mm1", "cam_sm", "cam_q", "cam_dq", "cam_t2", "cam_mm2")


@pytest.mark.parametrize("artifact", ["tiny_fp32_onnx", "tiny_fp16_onnx", "tiny_int8_onnx"])
def test_finds_pam_and_cam_in_every_precision_the_project_writes(artifact: str, request: pytest.FixtureRequest) -> None:
    # the real exports: layout ops (FP32), AutoCast's Casts (FP16), Q/DQ pairs around the chains (INT8)
    model = onnx.load(str(request.getfixturevalue(artifact)), load_external_data=False)
    ops = {node_id(n): n.op_type for n in model.graph.node}
    chains = find_attention_chains(model)
    assert len(chains) == 2
    assert all([ops[n] for n in c.core_nodes()] == ["MatMul", "Softmax", "MatMul"] for c in chains)


def test_no_chain_without_second_matmul() -> None:
    model = two_attention_model()
    # the CAM softmax output goes straight to the graph output: no second MatMul reads it
    for node in model.graph.node:
        if node.name == "cam_t2":
            node.input[0] = "x"
    assert [c.softmax for c in find_attention_chains(model)] == ["pam_sm"]


def test_attention_feeders_follow_pass_through_and_relu() -> None:
    model = two_attention_model()
    graph = model.graph
    graph.input[0].name = "raw"
    graph.node.insert(0, helper.make_node("Relu", ["raw_conv"], ["x"], name="relu"))
    graph.node.insert(0, helper.make_node("Neg", ["raw"], ["raw_conv"], name="neg"))
    feeders = attention_feeders(model, find_attention_chains(model))
    assert feeders == {"relu", "neg"}  # Relu passes on to its producer; Neg is the compute node that feeds


def test_external_data_locations_from_path_and_proto(tmp_path: Path) -> None:
    model = two_attention_model()
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(4096, dtype=np.float32), "big"))
    inline = tmp_path / "inline.onnx"
    onnx.save(model, str(inline))
    assert external_data_locations(inline) == []
    external = tmp_path / "ext.onnx"
    onnx.save(model, str(external), save_as_external_data=True, location="ext.onnx.data", size_threshold=1024)
    assert external_data_locations(external) == ["ext.onnx.data"]
    assert external_data_locations(onnx.load(str(external), load_external_data=False)) == ["ext.onnx.data"]

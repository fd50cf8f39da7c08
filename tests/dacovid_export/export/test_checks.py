"""The ONNX self-checks on small hand-built graphs: each must reject the defect it exists for."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dacovid_export.artifacts.onnx_graph import find_attention_chains
from dacovid_export.core.errors import CheckFailedError
from dacovid_export.export.checks import (
    check_attention_fp32,
    check_attention_pattern,
    check_constant_axes,
    check_no_decomposed_softmax,
    check_opset,
    check_pooling_dilations,
    check_qdq_zero_points,
    check_trt_operators,
    op_histogram,
    run_structural_checks,
    validate_model,
)
from dacovid_export.trt.onnx_operators import TRT_SUPPORTED_OPS, TRT_UNSUPPORTED_OPS
from tests.helpers.onnx_graphs import (
    attention_nodes,
    make_model,
    qdq_model,
    two_attention_model,
)

F = TensorProto.FLOAT


def test_clean_attention_graph_passes_every_check() -> None:
    model = validate_model(two_attention_model())
    report = run_structural_checks(model)
    assert len(report.attention) == 2
    assert {b.softmax for b in report.attention} == {"pam_sm", "cam_sm"}
    assert report.histogram["MatMul"] == 4 and report.histogram["Softmax"] == 2


def test_hand_written_softmax_is_rejected() -> None:
    model = two_attention_model(softmax=False)
    onnx.checker.check_model(model, full_check=True)  # a valid graph: only our check objects to it
    with pytest.raises(CheckFailedError, match="Exp -> ReduceSum -> Div"):
        check_no_decomposed_softmax(model)
    with pytest.raises(CheckFailedError, match="Exp -> ReduceSum -> Div"):
        check_attention_pattern(model)


def test_missing_attention_chain_is_rejected() -> None:
    # one chain only: the CAM MatMul feeds the Add directly, no softmax
    nodes = attention_nodes("pam") + [
        helper.make_node("MatMul", ["x", "pam_xt"], ["cam_energy"], name="cam_mm1"),
        helper.make_node("MatMul", ["cam_energy", "x"], ["cam_out"], name="cam_mm2"),
        helper.make_node("Add", ["pam_out", "cam_out"], ["y"]),
    ]
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", F, [2, 4, 6])], [helper.make_tensor_value_info("y", F, [2, 4, 6])]
    )
    assert len(find_attention_chains(model)) == 1
    with pytest.raises(CheckFailedError, match="found 1 MatMul -> Softmax -> MatMul"):
        check_attention_pattern(model, expected=2)


def _single_op_model(op: str, domain: str = "") -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], domain=domain, name=f"the_{op.lower()}")
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", F, [4])], [helper.make_tensor_value_info("y", F, None)]
    )
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize("op", ["Unique", "NonZeroish"])
def test_operator_unknown_or_unsupported_by_tensorrt_is_rejected(op: str) -> None:
    with pytest.raises(CheckFailedError, match=op):
        check_trt_operators(_single_op_model(op))


def test_custom_domain_operator_is_rejected() -> None:
    with pytest.raises(CheckFailedError, match="com.microsoft::Gelu"):
        check_trt_operators(_single_op_model("Gelu", domain="com.microsoft"))


def test_supported_operator_passes() -> None:
    check_trt_operators(_single_op_model("Relu"))


def test_operator_tables_are_consistent() -> None:
    assert not TRT_SUPPORTED_OPS & TRT_UNSUPPORTED_OPS
    # what the DA-COVID Net export and the precision step produce must be parseable
    assert {"Conv", "Relu", "MatMul", "Softmax", "ReduceMean", "Gemm", "MaxPool", "Cast",
            "QuantizeLinear", "DequantizeLinear", "Transpose", "Reshape"} <= TRT_SUPPORTED_OPS  # fmt: skip


def _reduce_mean_model(axes_constant: bool) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", F, [2, 3, 4, 4])
    y = helper.make_tensor_value_info("y", F, None)
    if axes_constant:
        nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0, name="rm")]
        inits = [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")]
    else:
        # axes computed from the input's shape: legal ONNX, but TensorRT needs constants
        nodes = [
            helper.make_node("Shape", ["x"], ["shape"], start=2, name="shape"),
            helper.make_node("Size", ["shape"], ["n"], name="size"),
            helper.make_node("Reshape", ["n", "one"], ["axes"], name="reshape"),
            helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0, name="rm"),
        ]
        inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    return make_model(nodes, [x], [y], inits)


def test_reduce_mean_axes_must_be_constant() -> None:
    check_constant_axes(_reduce_mean_model(axes_constant=True))
    with pytest.raises(CheckFailedError, match="ReduceMean 'rm'"):
        check_constant_axes(_reduce_mean_model(axes_constant=False))


def test_pooling_dilation_is_rejected() -> None:
    def pool(dilations: list[int]) -> onnx.ModelProto:
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], dilations=dilations, name="pool")
        return make_model([node], [helper.make_tensor_value_info("x", F, [1, 1, 8, 8])], [helper.make_tensor_value_info("y", F, None)])

    check_pooling_dilations(pool([1, 1]))
    with pytest.raises(CheckFailedError, match="dilations=\\[2, 2\\]"):
        check_pooling_dilations(pool([2, 2]))


def test_qdq_zero_point_must_be_signed_zero() -> None:
    assert check_qdq_zero_points(qdq_model(0, TensorProto.INT8)) == 2
    with pytest.raises(CheckFailedError, match="zero point is not 0"):
        check_qdq_zero_points(qdq_model(3, TensorProto.INT8))
    with pytest.raises(CheckFailedError, match="UINT8, not INT8"):
        check_qdq_zero_points(qdq_model(128, TensorProto.UINT8))


def test_attention_in_fp16_is_rejected() -> None:
    # the same chains with the energy cast to FP16 before the softmax, as a naive FP16 conversion does
    model = two_attention_model()
    graph = model.graph
    for prefix in ("pam", "cam"):
        sm = next(n for n in graph.node if n.name == f"{prefix}_sm")
        idx = list(graph.node).index(sm)
        graph.node.insert(idx, helper.make_node("Cast", [f"{prefix}_energy"], [f"{prefix}_e16"], to=TensorProto.FLOAT16))
        sm.input[0] = f"{prefix}_e16"
        graph.node.insert(
            idx + 2, helper.make_node("Cast", [f"{prefix}_att16"], [f"{prefix}_att"], to=TensorProto.FLOAT)
        )
        sm.output[0] = f"{prefix}_att16"
    inferred = validate_model(model)
    blocks = check_attention_pattern(inferred)
    assert len(blocks) == 2  # Casts do not hide the pattern ...
    with pytest.raises(CheckFailedError, match="FLOAT16"):
        check_attention_fp32(inferred, blocks)  # ... but the precision check sees them
    with pytest.raises(CheckFailedError, match="must stay in FP32"):
        run_structural_checks(inferred, attention_fp32=True)


def test_opset_outside_tensorrt_range_is_rejected() -> None:
    assert check_opset(_single_op_model("Relu")) == 20
    model = _single_op_model("Relu")
    model.opset_import[0].version = 25
    with pytest.raises(CheckFailedError, match="opset 25"):
        check_opset(model)


def test_invalid_graph_fails_validation() -> None:
    # Add of shapes [2] and [3] cannot broadcast: strict shape inference must say so
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("a", F, [2]), helper.make_tensor_value_info("b", F, [3])],
        [helper.make_tensor_value_info("y", F, None)],
    )
    with pytest.raises(CheckFailedError):
        validate_model(model)


def test_op_histogram_counts_most_frequent_first() -> None:
    hist = op_histogram(two_attention_model())
    # ties in alphabetical order, so the histogram of a model is stable across runs
    assert list(hist.items()) == [("MatMul", 4), ("Transpose", 4), ("Softmax", 2), ("Add", 1)]

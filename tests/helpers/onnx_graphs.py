"""Small hand-built ONNX graphs for the graph checks and the attention finder (plain functions, no fixtures)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 20) -> "onnx.ModelProto":
    """A default-domain model of ``nodes`` at ``opset``."""
    from onnx import helper

    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def attention_nodes(prefix: str, softmax: bool = True) -> list["onnx.NodeProto"]:
    """x: B x C x N -> MatMul(x, x^T) -> softmax -> Transpose -> MatMul -> ``{prefix}_out`` (B x C x N)."""
    from onnx import helper

    nodes = [
        helper.make_node("Transpose", ["x"], [f"{prefix}_xt"], perm=[0, 2, 1], name=f"{prefix}_t"),
        helper.make_node("MatMul", ["x", f"{prefix}_xt"], [f"{prefix}_energy"], name=f"{prefix}_mm1"),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", [f"{prefix}_energy"], [f"{prefix}_att"], axis=-1, name=f"{prefix}_sm"))
    else:
        # the hand-written softmax the checks exist to reject
        nodes += [
            helper.make_node("Exp", [f"{prefix}_energy"], [f"{prefix}_exp"], name=f"{prefix}_exp"),
            helper.make_node("ReduceSum", [f"{prefix}_exp", "axes_last"], [f"{prefix}_sum"], keepdims=1, name=f"{prefix}_rs"),
            helper.make_node("Div", [f"{prefix}_exp", f"{prefix}_sum"], [f"{prefix}_att"], name=f"{prefix}_div"),
        ]
    nodes += [
        helper.make_node("Transpose", [f"{prefix}_att"], [f"{prefix}_att_t"], perm=[0, 2, 1], name=f"{prefix}_t2"),
        helper.make_node("MatMul", [f"{prefix}_att_t", "x"], [f"{prefix}_out"], name=f"{prefix}_mm2"),
    ]
    return nodes


def two_attention_model(softmax: bool = True) -> "onnx.ModelProto":
    """PAM- and CAM-like chains on input ``x`` (2 x 4 x 6), added into ``y``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes = attention_nodes("pam", softmax) + attention_nodes("cam", softmax)
    nodes.append(helper.make_node("Add", ["pam_out", "cam_out"], ["y"], name="fuse"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 6])
    axes = numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes_last")
    return make_model(nodes, [x], [y], [axes])


def qdq_model(zero_point: int, dtype: int) -> "onnx.ModelProto":
    """``x -> QuantizeLinear -> DequantizeLinear -> y`` with scale 0.1 and a zero point of ``dtype`` (TensorProto)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    np_type = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[dtype]
    inits = [
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(zero_point, dtype=np_type), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dq"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    return make_model(nodes, [x], [y], inits)

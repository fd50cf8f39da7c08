"""Inspection of a Q/DQ (explicitly quantized) ONNX model: what TensorRT's strongly typed INT8 path needs.

TensorRT takes INT8 Q/DQ only in the symmetric signed form (S8S8): every zero point is
0 and of type int8. Weights should be quantized per output channel. The attention
chains must not be fed by a DequantizeLinear, or the builder would run them in INT8.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dacovid_export.artifacts.onnx_graph import (
    AttentionChain,
    constant_names,
    data_input,
    producers,
)
from dacovid_export.calibration.graph import NON_COMPUTE_OPS
from dacovid_export.core.errors import CheckFailedError

if TYPE_CHECKING:
    import onnx

__all__ = ["QdqSummary", "inspect_qdq", "check_qdq", "dequantized_nodes"]

@dataclasses.dataclass(frozen=True)
class QdqSummary:
    """Counts and problems of a Q/DQ model; ``problems`` is empty for a TensorRT-ready S8S8 model."""

    quantize_nodes: int
    dequantize_nodes: int
    weight_quantizers: int
    per_channel_weights: int
    quantized_nodes: tuple[str, ...]  # compute nodes with at least one dequantized input
    fp32_nodes: tuple[str, ...]  # compute nodes with no dequantized input
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "quantize_nodes": self.quantize_nodes,
            "dequantize_nodes": self.dequantize_nodes,
            "weight_quantizers": self.weight_quantizers,
            "per_channel_weights": self.per_channel_weights,
            "quantized_nodes": len(self.quantized_nodes),
        }


def _fed_by_dequantize(tensor: str, producer: dict, constants: set[str]) -> bool:
    """True when ``tensor`` comes from a DequantizeLinear, possibly through data-movement nodes."""
    seen: set[str] = set()
    while tensor not in seen:
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None:
            return False
        if node.op_type == "DequantizeLinear":
            return True
        data = data_input(node, constants)
        if data is None:
            return False
        tensor = data
    return False


def dequantized_nodes(model: "onnx.ModelProto") -> set[str]:
    """Names of the non-Q/DQ nodes with at least one input that comes from a DequantizeLinear."""
    producer = producers(model.graph)
    constants = constant_names(model.graph)
    return {
        node.name
        for node in model.graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(_fed_by_dequantize(name, producer, constants) for name in node.input if name)
    }


def inspect_qdq(model: "onnx.ModelProto") -> QdqSummary:
    """Count Q/DQ nodes and list every deviation from symmetric, signed INT8 with per-channel weights."""
    import numpy as np
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    problems: list[str] = []
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]

    def zero_point(node: "onnx.NodeProto") -> "np.ndarray | None":
        if len(node.input) < 3 or not node.input[2]:
            return None
        init = initializers.get(node.input[2])
        return None if init is None else numpy_helper.to_array(init)

    for node in quantize + dequantize:
        zp = zero_point(node)
        if zp is None:
            if node.op_type == "QuantizeLinear":
                # without a zero point QuantizeLinear outputs uint8
                problems.append(f"{node.name}: QuantizeLinear without an int8 zero point (would output uint8)")
            elif node.input[0] in initializers and initializers[node.input[0]].data_type != 3:  # 3 = INT8
                problems.append(f"{node.name}: DequantizeLinear of a non-int8 initializer")
            continue
        if zp.dtype != np.int8:
            problems.append(f"{node.name}: zero point of type {zp.dtype} (TensorRT needs int8)")
        elif np.any(zp != 0):
            problems.append(f"{node.name}: non-zero zero point (TensorRT needs symmetric quantization)")

    weight_quantizers = 0
    per_channel = 0
    for node in quantize + dequantize:
        weight = initializers.get(node.input[0])
        if weight is None or (node.op_type == "DequantizeLinear" and weight.data_type != 3):
            continue  # activation quantizer (or the DQ half of a weight Q/DQ pair)
        weight_quantizers += 1
        scale = initializers.get(node.input[1])
        shape = tuple(weight.dims)
        scale_shape = tuple(scale.dims) if scale is not None else ()
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if len(scale_shape) == 1 and len(shape) > axis and scale_shape[0] == shape[axis] and shape[axis] > 1:
            per_channel += 1
        elif len(shape) > 1 and shape[0] > 1:
            problems.append(f"{node.name}: per-tensor weight scale for a weight of shape {list(shape)}")

    quantized = dequantized_nodes(model)
    names = [n.name for n in model.graph.node]
    return QdqSummary(
        quantize_nodes=len(quantize),
        dequantize_nodes=len(dequantize),
        weight_quantizers=weight_quantizers,
        per_channel_weights=per_channel,
        quantized_nodes=tuple(n for n in names if n in quantized),
        fp32_nodes=tuple(
            n.name for n in model.graph.node if n.op_type not in NON_COMPUTE_OPS and n.name not in quantized
        ),
        problems=tuple(problems),
    )


def check_qdq(model: "onnx.ModelProto", chains: Sequence[AttentionChain]) -> QdqSummary:
    """:func:`inspect_qdq` plus the attention rule; :class:`CheckFailedError` on any problem."""
    summary = inspect_qdq(model)
    problems = list(summary.problems)
    if summary.quantize_nodes == 0:
        problems.append("no QuantizeLinear nodes: nothing was quantized")
    quantized = set(summary.quantized_nodes)
    for chain in chains:
        hit = [n for n in (*chain.nodes, *chain.entry_nodes) if n in quantized]
        if hit:
            problems.append(f"attention chain {chain.softmax}: dequantized input reaches {hit}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise CheckFailedError(f"the INT8 model is not TensorRT-ready symmetric INT8: {shown}")
    return summary

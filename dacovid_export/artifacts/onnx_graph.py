"""The anatomy of an exported ONNX graph: producers, consumers, constants, tensor types, attention chains, external data.

Every stage reads the same graph facts (the export self-checks, the precision step,
the TensorRT layer report), so they are defined once here, below all of them.

Attention chains are found by structure, not by name: a ``Softmax`` whose input comes
from a ``MatMul`` and whose output reaches a second ``MatMul``, allowing the nodes of
:data:`PASS_THROUGH_OPS` and scaling by a constant in between. In DA-COVID Net these
are PAM (``Q^T K -> softmax -> V s^T``) and CAM (``A A^T -> softmax -> x A``). Their
energies overflow FP16 (CAM reaches ~2e6, docs/design.md section 4), so every
precision step keeps them in FP32 and the checks verify that it did.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

__all__ = [
    "PASS_THROUGH_OPS",
    "AttentionChain",
    "find_attention_chains",
    "attention_feeders",
    "data_input",
    "node_id",
    "all_nodes",
    "producers",
    "consumers",
    "constant_names",
    "constant_values",
    "tensor_types",
    "external_data_locations",
]

# Ops that move, relabel or re-encode data without arithmetic that could overflow. The
# same attention must be found in all three artifacts: the FP32 export has layout ops
# (Reshape, Transpose, ...) around the MatMuls; an FP16 AutoCast model adds Cast at the
# FP32 islands' borders; an INT8 model has QuantizeLinear/DequantizeLinear pairs, and
# the checks must still see the chain when a Q/DQ pair wrongly sits inside it.
PASS_THROUGH_OPS = frozenset(
    {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "QuantizeLinear", "DequantizeLinear"}
)
# ops that scale attention energies (e.g. 1/sqrt(d)); pass-through when one input is a constant
_SCALE_OPS = frozenset({"Mul", "Div"})


@dataclasses.dataclass(frozen=True)
class AttentionChain:
    """One MatMul -> Softmax -> MatMul chain (node ids: the name, or the first output of an unnamed node).

    ``nodes``: the chain from the energy MatMul to the output MatMul, inclusive (keep in FP32).
    ``entry_nodes``: pass-through nodes that feed the two MatMuls from outside the chain.
    ``entry_tensors``: where the chain's data comes from: the first tensor above each
    MatMul input that a compute node (or the graph input) produces.
    """

    energy_matmul: str
    softmax: str
    output_matmul: str
    nodes: tuple[str, ...]
    entry_nodes: tuple[str, ...]
    entry_tensors: tuple[str, ...]

    def core_nodes(self) -> tuple[str, str, str]:
        """The two MatMuls and the Softmax: the nodes whose arithmetic must run in FP32."""
        return (self.energy_matmul, self.softmax, self.output_matmul)


def node_id(node: "onnx.NodeProto") -> str:
    """A node's name, or its first output for an unnamed node (names are optional in ONNX)."""
    return node.name or node.output[0]


def all_nodes(graph: "onnx.GraphProto") -> Iterable["onnx.NodeProto"]:
    """Nodes of a graph and of the subgraphs of If/Loop/Scan."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from all_nodes(attr.g)
            for sub in attr.graphs:
                yield from all_nodes(sub)


def producers(graph: "onnx.GraphProto") -> dict[str, "onnx.NodeProto"]:
    """Tensor name -> the node that writes it (main graph)."""
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: "onnx.GraphProto") -> dict[str, list["onnx.NodeProto"]]:
    """Tensor name -> the nodes that read it, in graph order (main graph)."""
    out: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                out[name].append(node)
    return out


def constant_values(graph: "onnx.GraphProto") -> dict[str, "onnx.TensorProto"]:
    """Tensor name -> value of every initializer and ``Constant`` node output."""
    values = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def constant_names(graph: "onnx.GraphProto") -> set[str]:
    """Names of the initializers and ``Constant`` node outputs."""
    names = {i.name for i in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def tensor_types(model: "onnx.ModelProto") -> dict[str, int]:
    """Tensor name -> ``onnx.TensorProto`` element type, as far as the model records it (run shape inference first)."""
    graph = model.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def data_input(node: "onnx.NodeProto", constants: set[str]) -> str | None:
    """The input a pass-through node carries along, or None when ``node`` is not pass-through."""
    if node.op_type in PASS_THROUGH_OPS:
        return node.input[0] if node.input else None
    if node.op_type in _SCALE_OPS and len(node.input) == 2:
        variable = [t for t in node.input if t not in constants]
        if len(variable) == 1:
            return variable[0]
    return None


def _path_to_matmul(
    tensor: str, readers: Mapping[str, list["onnx.NodeProto"]], constants: set[str], seen: set[int]
) -> list["onnx.NodeProto"] | None:
    """Pass-through nodes from ``tensor`` down to the first MatMul that reads it, MatMul last; None if none does."""
    for node in readers.get(tensor, []):
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "MatMul":
            return [node]
        if data_input(node, constants) == tensor:
            rest = _path_to_matmul(node.output[0], readers, constants, seen)
            if rest is not None:
                return [node, *rest]
    return None


def find_attention_chains(model: "onnx.ModelProto") -> tuple[AttentionChain, ...]:
    """Every MatMul -> Softmax -> MatMul chain of ``model``, in graph order (FP32, FP16 or Q/DQ INT8)."""
    producer = producers(model.graph)
    readers = consumers(model.graph)
    constants = constant_names(model.graph)

    chains: list[AttentionChain] = []
    for softmax in (n for n in model.graph.node if n.op_type == "Softmax" and n.input):
        above: list[onnx.NodeProto] = []
        node = producer.get(softmax.input[0])
        while node is not None and node.op_type != "MatMul":
            data = data_input(node, constants)
            if data is None:
                node = None
                break
            above.append(node)
            node = producer.get(data)
        if node is None:
            continue
        first = node
        below = _path_to_matmul(softmax.output[0], readers, constants, set())
        if below is None:
            continue
        second = below.pop()

        region = [first, *reversed(above), softmax, *below, second]
        region_outputs = {o for n in region for o in n.output}
        entry_nodes: list[str] = []
        entry_tensors: list[str] = []
        for matmul in (first, second):
            for name in matmul.input:
                while name not in region_outputs:
                    node = producer.get(name)
                    data = None if node is None else data_input(node, constants)
                    if data is None:
                        if name not in entry_tensors and name not in constants:
                            entry_tensors.append(name)
                        break
                    if node_id(node) not in entry_nodes:
                        entry_nodes.append(node_id(node))
                    name = data
        chains.append(
            AttentionChain(
                energy_matmul=node_id(first),
                softmax=node_id(softmax),
                output_matmul=node_id(second),
                nodes=tuple(node_id(n) for n in region),
                entry_nodes=tuple(entry_nodes),
                entry_tensors=tuple(entry_tensors),
            )
        )
    return tuple(chains)


def attention_feeders(model: "onnx.ModelProto", chains: Sequence[AttentionChain]) -> set[str]:
    """Nodes whose output reaches an attention chain's input through pass-through nodes or ReLU only."""
    producer = producers(model.graph)
    passing = PASS_THROUGH_OPS | {"Relu"}
    feeders: set[str] = set()
    for chain in chains:
        stack = list(chain.entry_tensors)
        seen: set[str] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            node = producer.get(tensor)
            if node is None:
                continue
            feeders.add(node.name)
            if node.op_type in passing:
                stack.append(node.input[0])
    return feeders


def external_data_locations(model: "onnx.ModelProto | str | os.PathLike[str]") -> list[str]:
    """The external data files an ONNX model references, as written in it (relative to its folder).

    Give the loaded proto (weights need not be loaded) or the model's path (read
    without its weights).
    """
    import onnx

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return sorted(locations)

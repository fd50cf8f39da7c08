"""An ONNX model as TensorRT parses it: the network, parser errors as one line, and each node's precision.

Both TensorRT runtimes are strongly typed: every layer runs in the type its
tensors have in the ONNX graph. So the evidence that the attention stayed FP32
and the convolutions became FP16 or INT8 is the network the real parser made,
not our own reading of the graph. :func:`read_layer_precisions` walks that
network: each layer carries its ONNX node's name in ``ILayer.metadata``
(``"[ONNX Layer: node_matmul]"``), and a convolution counts as INT8 when both
its data and its weights arrive through a DequantizeLinear of an INT8 tensor,
the pattern TensorRT fuses into an INT8 kernel.

The module receives the ``tensorrt``/``tensorrt_rtx`` module object; it never
imports either (see :mod:`dacovid_export.trt.library`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.onnx_graph import find_attention_chains
from dacovid_export.core.errors import (
    EngineBuildError,
    MissingDependencyError,
    one_line,
)

if TYPE_CHECKING:
    from types import ModuleType

    from dacovid_export.trt.library import TrtLog

__all__ = [
    "ParsedNetwork",
    "NodePrecision",
    "LayerPrecisions",
    "parse_onnx",
    "parser_failure",
    "read_layer_precisions",
    "check_parses",
]

_METADATA = re.compile(r"\[ONNX Layer: (.+?)\]")
# TensorRT DataType member name -> the numpy-style name the sidecar uses
_DTYPE_NAMES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "FP8": "fp8",
    "INT4": "int4",
    "FP4": "fp4",
    "E8M0": "e8m0",
}


@dataclasses.dataclass
class ParsedNetwork:
    """Builder, network and parser kept together: the network lives only as long as its builder."""

    builder: Any
    network: Any
    parser: Any


def parser_failure(parser: Any, source: Path, tlog: "TrtLog | None" = None) -> str:
    """One line naming the first failing node, its operator and the parser's reason."""
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        code = one_line(str(err.code()))
        desc = one_line(err.desc())
        node = int(err.node())
        if node >= 0:
            errors.append(f"node {node} {err.node_name()!r} (operator {err.node_operator()}): {code}: {desc}")
        else:
            errors.append(f"{code}: {desc}")
    if tlog is not None:
        tlog.take_errors()
    if not errors:
        return f"TensorRT's ONNX parser rejected {str(source)!r} without an error message"
    more = f" (and {len(errors) - 1} more parser error(s))" if len(errors) > 1 else ""
    return f"TensorRT's ONNX parser rejected {str(source)!r}: {errors[0]}{more}"


def parse_onnx(trt: "ModuleType", source: str | os.PathLike[str]) -> ParsedNetwork:
    """Parse ``source`` into a strongly typed network; :class:`EngineBuildError` (one line) if the parser refuses it."""
    from dacovid_export.trt.library import network_creation_flags, trt_logger

    source = Path(source)
    logger, tlog = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_creation_flags(trt))
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so external weight files beside the model are found
    if not parser.parse_from_file(str(source)):
        raise EngineBuildError(parser_failure(parser, source, tlog))
    return ParsedNetwork(builder=builder, network=network, parser=parser)


@dataclasses.dataclass(frozen=True)
class NodePrecision:
    """What TensorRT made of one ONNX node: its layer type, output type and compute type."""

    node: str
    op_type: str  # the ONNX operator ("" when the graph was not read)
    layer_type: str  # TensorRT layer type of the node's last layer, e.g. "CONVOLUTION"
    output: str  # e.g. "float16"
    compute: str  # "int8" for a convolution/MatMul fed by INT8 Q/DQ, else its input type

    def to_dict(self) -> dict[str, str]:
        return {"op": self.op_type, "layer": self.layer_type, "output": self.output, "compute": self.compute}


@dataclasses.dataclass(frozen=True)
class LayerPrecisions:
    """Per-node precisions of a parsed network, with the counts a reviewer asks for first."""

    library: str  # e.g. "TensorRT-RTX 1.7.1.116"
    nodes: tuple[NodePrecision, ...]
    attention_nodes: tuple[str, ...]  # PAM/CAM MatMul and Softmax node names

    def _of(self, op_type: str) -> list[NodePrecision]:
        return [n for n in self.nodes if n.op_type == op_type]

    @property
    def convolutions(self) -> int:
        return len(self._of("Conv"))

    @property
    def int8_convolutions(self) -> int:
        return sum(1 for n in self._of("Conv") if n.compute == "int8")

    @property
    def attention_fp32(self) -> int:
        names = set(self.attention_nodes)
        return sum(1 for n in self.nodes if n.node in names and n.compute == "float32" and n.output == "float32")

    def counts(self) -> dict[str, Any]:
        by_op: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
        for n in self.nodes:
            by_op[n.op_type or n.layer_type][n.compute] += 1
        return {
            "convolutions": self.convolutions,
            "convolutions_int8": self.int8_convolutions,
            "attention_nodes": len(self.attention_nodes),
            "attention_fp32": self.attention_fp32,
            "by_operator": {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "typed_by": self.library,
            "counts": self.counts(),
            "nodes": {n.node: n.to_dict() for n in self.nodes},
        }

    def table_lines(self) -> list[str]:
        """A short table: compute types of the operators that decide precision, then the two counts."""
        counts = self.counts()
        lines = [f"precision per ONNX node, as the {self.library} parser typed the network:"]
        for op in ("Conv", "MatMul", "Softmax", "Gemm"):
            per = counts["by_operator"].get(op)
            if per:
                cells = ", ".join(f"{dtype} {k}" for dtype, k in per.items())
                lines.append(f"  {op:<8} {sum(per.values()):>3}  {cells}")
        lines.append(f"  attention (PAM/CAM MatMul+Softmax) in float32: {self.attention_fp32}/{len(self.attention_nodes)}")
        lines.append(f"  convolutions fed by INT8 Q/DQ: {self.int8_convolutions}/{self.convolutions}")
        return lines


def _dtype(trt: "ModuleType", dtype: Any) -> str:
    name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    return _DTYPE_NAMES.get(name, name.lower())


def _node_name(layer: Any) -> str:
    match = _METADATA.search(str(getattr(layer, "metadata", "") or ""))
    return match.group(1) if match else str(layer.name)


def _onnx_graph_facts(source: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """ONNX op type by node name, and the attention nodes (graph only, weights not loaded)."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    op_types = {node.name: node.op_type for node in model.graph.node}
    attention: list[str] = []
    for chain in find_attention_chains(model):
        attention.extend(chain.core_nodes())
    return op_types, tuple(dict.fromkeys(attention))


def read_layer_precisions(trt: "ModuleType", network: Any, source: str | os.PathLike[str]) -> LayerPrecisions:
    """The precision of every ONNX node that ``network`` (parsed from ``source``) holds."""
    from dacovid_export.trt.library import runtime_of

    op_types, attention = _onnx_graph_facts(Path(source))
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    producer: dict[str, Any] = {}
    for layer in layers:
        for j in range(layer.num_outputs):
            producer[layer.get_output(j).name] = layer

    def int8_dq(tensor: Any) -> bool:
        src = producer.get(tensor.name) if tensor is not None else None
        if src is None or src.type != trt.LayerType.DEQUANTIZE:
            return False
        quantized = src.get_input(0)
        return quantized is not None and _dtype(trt, quantized.dtype) == "int8"

    last_layer: dict[str, Any] = {}
    for layer in layers:
        if layer.type == trt.LayerType.CONSTANT:
            continue
        last_layer[_node_name(layer)] = layer  # a node may become several layers; its output is the last one's
    nodes = []
    for name, layer in last_layer.items():
        if op_types and name not in op_types:
            continue  # a layer TensorRT added itself (shape arithmetic, layout), not an ONNX node
        out = layer.get_output(0) if layer.num_outputs else None
        output = _dtype(trt, out.dtype) if out is not None else "none"
        first_in = layer.get_input(0) if layer.num_inputs else None
        compute = _dtype(trt, first_in.dtype) if first_in is not None else output
        if layer.type in (trt.LayerType.CONVOLUTION, trt.LayerType.MATRIX_MULTIPLY) and layer.num_inputs >= 2:
            if int8_dq(layer.get_input(0)) and int8_dq(layer.get_input(1)):
                compute = "int8"
        nodes.append(
            NodePrecision(
                node=name,
                op_type=op_types.get(name, ""),
                layer_type=getattr(layer.type, "name", str(layer.type)),
                output=output,
                compute=compute,
            )
        )
    library = f"{'TensorRT-RTX' if runtime_of(trt) == 'tensorrt-rtx' else 'TensorRT'} {trt.__version__}"
    return LayerPrecisions(library=library, nodes=tuple(nodes), attention_nodes=attention)


def check_parses(source: str | os.PathLike[str], *, runtimes: Sequence[str] | None = None) -> str | None:
    """Parse ``source`` with a TensorRT library that can parse here; the library's name, or ``None`` if none can.

    TensorRT-RTX parses without a GPU; TensorRT's builder needs one, so it is
    tried only where a GPU is visible. Raises :class:`EngineBuildError` (one
    line naming the node and operator) when the parser refuses the model.
    """
    from dacovid_export.trt.library import (
        cuda_visible,
        import_runtime,
        installed_runtimes,
    )

    installed = installed_runtimes()
    order = list(runtimes) if runtimes is not None else ["tensorrt-rtx", "tensorrt"]
    for runtime in order:
        if runtime not in installed or (runtime == "tensorrt" and not cuda_visible()):
            continue
        try:
            trt = import_runtime(runtime)
        except MissingDependencyError:
            continue  # installed but unusable (e.g. too old): the next library, or the fallback list
        parse_onnx(trt, source)
        return f"{'TensorRT-RTX' if runtime == 'tensorrt-rtx' else 'TensorRT'} {trt.__version__}"
    return None

"""Structural self-checks of an exported ONNX model: validity, TensorRT compatibility, attention pattern.

Every check raises :class:`~dacovid_export.core.errors.CheckFailedError` with a message
that names the offending nodes and says what to do. The same checks run on the
FP32 export and on the FP16 / INT8 models of the precision step, where they
apply (:func:`run_structural_checks` takes a precision's rules).

Why these checks: TensorRT builds a strongly typed network from the graph as it
is (docs/design.md section 3), so an operator it cannot parse, a softmax written
as Exp/ReduceSum/Div (which hides the MatMul -> Softmax -> MatMul pattern the
builder fuses), or an attention block cast to FP16/INT8 (CAM energies reach
~2e6, far past FP16's 65,504: section 4) are all defects of the ONNX file.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from dacovid_export.artifacts.onnx_graph import (
    AttentionChain,
    all_nodes,
    constant_names,
    constant_values,
    consumers,
    find_attention_chains,
    node_id,
    producers,
    tensor_types,
)
from dacovid_export.core.errors import CheckFailedError, EngineBuildError, first_line
from dacovid_export.trt.network import check_parses
from dacovid_export.trt.onnx_operators import (
    TRT_CONSTANT_AXES_OPS,
    TRT_DOC_VERSION,
    TRT_MAX_OPSET,
    TRT_MIN_OPSET,
    TRT_POOLING_OPS,
    TRT_SUPPORTED_OPS,
    TRT_UNSUPPORTED_OPS,
)

if TYPE_CHECKING:
    import onnx

__all__ = [
    "StructuralReport",
    "validate_model",
    "op_histogram",
    "check_opset",
    "check_trt_operators",
    "check_constant_axes",
    "check_pooling_dilations",
    "check_qdq_zero_points",
    "check_attention_pattern",
    "check_no_decomposed_softmax",
    "check_attention_fp32",
    "run_structural_checks",
]

_FLOAT = 1  # onnx.TensorProto.FLOAT
@dataclasses.dataclass(frozen=True)
class StructuralReport:
    """What :func:`run_structural_checks` found: checks passed, operator histogram, attention chains."""

    checks: tuple[str, ...]
    histogram: Mapping[str, int]
    attention: tuple[AttentionChain, ...]


# ---------------------------------------------------------------------------
# validity


def validate_model(model: "onnx.ModelProto | str | os.PathLike[str]") -> "onnx.ModelProto":
    """``onnx.checker.check_model(full_check=True)`` plus strict shape inference; returns the inferred model.

    Give a path for models near 2 GB (the in-memory checker refuses larger protos).
    """
    import onnx

    try:
        onnx.checker.check_model(os.fspath(model) if isinstance(model, (str, os.PathLike)) else model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise CheckFailedError(f"onnx.checker rejected the model: {first_line(exc)}") from exc
    proto = onnx.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as exc:
        raise CheckFailedError(f"ONNX shape inference failed: {first_line(exc)}") from exc


# ---------------------------------------------------------------------------
# operators


def op_histogram(model: "onnx.ModelProto") -> dict[str, int]:
    """``{op_type: count}`` over the main graph, most frequent first (domain-qualified outside ai.onnx)."""
    counts = collections.Counter(_qualified(n) for n in model.graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _qualified(node: "onnx.NodeProto") -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def check_opset(model: "onnx.ModelProto") -> int:
    """The default-domain opset, which must lie in the range the TensorRT parser reads."""
    versions = [int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise CheckFailedError("the model imports no ai.onnx opset; it was not written by a standard exporter")
    opset = versions[0]
    if not TRT_MIN_OPSET <= opset <= TRT_MAX_OPSET:
        raise CheckFailedError(
            f"opset {opset} is outside {TRT_MIN_OPSET}..{TRT_MAX_OPSET}, the range the TensorRT {TRT_DOC_VERSION} "
            "ONNX parser reads; export with a supported --opset"
        )
    return opset


def check_trt_operators(model: "onnx.ModelProto") -> None:
    """Every node is an operator the TensorRT ONNX parser supports (onnx-tensorrt docs/operators.md)."""
    unsupported: dict[str, list[str]] = collections.defaultdict(list)
    for node in all_nodes(model.graph):
        op = _qualified(node)
        if node.domain not in ("", "ai.onnx") or op in TRT_UNSUPPORTED_OPS or op not in TRT_SUPPORTED_OPS:
            unsupported[op].append(node.name or "(unnamed)")
    if unsupported:
        listing = "; ".join(f"{op} x{len(names)} (e.g. {names[0]})" for op, names in sorted(unsupported.items()))
        raise CheckFailedError(
            f"operators the TensorRT {TRT_DOC_VERSION} ONNX parser does not support: {listing}. "
            "Rewrite the module with supported operators (see onnx-tensorrt docs/operators.md)"
        )
    check_constant_axes(model)
    check_pooling_dilations(model)


def check_constant_axes(model: "onnx.ModelProto") -> None:
    """``axes`` of Reduce*/Squeeze/Unsqueeze (an input since opset 18/13) must be a constant tensor."""
    constants = constant_names(model.graph)
    bad = [
        f"{node.op_type} {node.name!r} (axes from {node.input[1]!r})"
        for node in model.graph.node
        if node.op_type in TRT_CONSTANT_AXES_OPS and len(node.input) > 1 and node.input[1] and node.input[1] not in constants
    ]
    if bad:
        raise CheckFailedError(
            "TensorRT needs constant axes, but these take computed axes: " + "; ".join(bad[:5])
            + ". Use fixed dims (e.g. mean(dim=(2, 3))) instead of shape arithmetic"
        )


def check_pooling_dilations(model: "onnx.ModelProto") -> None:
    """Pooling dilations must be absent or all ones (TensorRT's pooling layer has no dilation)."""
    import onnx

    bad = []
    for node in model.graph.node:
        if node.op_type in TRT_POOLING_OPS:
            for attr in node.attribute:
                if attr.name == "dilations" and any(int(d) != 1 for d in onnx.helper.get_attribute_value(attr)):
                    bad.append(f"{node.op_type} {node.name!r} dilations={list(attr.ints)}")
    if bad:
        raise CheckFailedError("TensorRT supports pooling with dilation 1 only: " + "; ".join(bad))


def check_qdq_zero_points(model: "onnx.ModelProto") -> int:
    """Q/DQ nodes are symmetric signed INT8 (zero point a constant 0 of type int8); returns how many there are."""
    import onnx
    from onnx import numpy_helper

    values = constant_values(model.graph)
    count = 0
    problems: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        count += 1
        label = f"{node.op_type} {node.name!r}"
        if len(node.input) < 3 or not node.input[2]:
            if node.op_type == "QuantizeLinear":
                # without a zero point QuantizeLinear produces uint8, which TensorRT does not quantize to
                problems.append(f"{label} has no zero point (implicit uint8)")
            continue
        zp = values.get(node.input[2])
        if zp is None:
            problems.append(f"{label} zero point {node.input[2]!r} is not a constant")
            continue
        if zp.data_type != onnx.TensorProto.INT8:
            problems.append(f"{label} zero point is {onnx.TensorProto.DataType.Name(zp.data_type)}, not INT8")
        elif np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{label} zero point is not 0")
    if problems:
        raise CheckFailedError(
            f"{len(problems)} Q/DQ node(s) TensorRT cannot use (it needs symmetric signed INT8, zero point 0): "
            + "; ".join(problems[:5])
        )
    return count


# ---------------------------------------------------------------------------
# attention pattern


def check_attention_pattern(model: "onnx.ModelProto", expected: int = 2) -> tuple[AttentionChain, ...]:
    """PAM and CAM appear as ``MatMul -> Softmax -> MatMul`` (at least ``expected`` chains) and no softmax is decomposed."""
    check_no_decomposed_softmax(model)
    chains = find_attention_chains(model)
    if len(chains) < expected:
        softmaxes = sum(1 for n in model.graph.node if n.op_type == "Softmax")
        raise CheckFailedError(
            f"found {len(chains)} MatMul -> Softmax -> MatMul chain(s) ({softmaxes} Softmax nodes in all); "
            f"expected {expected} (PAM and CAM). TensorRT fuses only this pattern: keep the attention as "
            "torch.matmul + torch.softmax"
        )
    return chains


def check_no_decomposed_softmax(model: "onnx.ModelProto") -> None:
    """Reject Exp whose output feeds both a ReduceSum and a Div: a hand-written softmax TensorRT cannot fuse."""
    readers = consumers(model.graph)
    found = []
    for node in model.graph.node:
        if node.op_type != "Exp":
            continue
        users = {n.op_type for n in _through_casts(node.output[0], readers)}
        if "ReduceSum" in users and ("Div" in users or "Mul" in users):
            found.append(node_id(node))
    if found:
        raise CheckFailedError(
            f"softmax written out as Exp -> ReduceSum -> Div at {', '.join(found[:5])}: TensorRT cannot fuse it and "
            "it overflows in FP16. Use torch.softmax so the graph has a Softmax node"
        )


def _through_casts(tensor: str, readers: Mapping[str, list["onnx.NodeProto"]]) -> list["onnx.NodeProto"]:
    out = []
    for node in readers.get(tensor, []):
        if node.op_type == "Cast":
            out.extend(_through_casts(node.output[0], readers))
        else:
            out.append(node)
    return out


def check_attention_fp32(model: "onnx.ModelProto", chains: Sequence[AttentionChain]) -> None:
    """The attention chains compute in FP32: float32 tensors, and no DequantizeLinear feeding their MatMuls.

    ``model`` must carry inferred types (the output of :func:`validate_model`).
    """
    types = tensor_types(model)
    by_id = {node_id(n): n for n in model.graph.node}
    producer = producers(model.graph)
    problems = []
    for chain in chains:
        for name in chain.core_nodes():
            node = by_id[name]
            for tensor in list(node.input) + list(node.output):
                elem = types.get(tensor)
                if elem is not None and elem != _FLOAT:
                    problems.append(f"{node.op_type} {name!r} tensor {tensor!r} is {_type_name(elem)}")
            if node.op_type == "MatMul":
                for tensor in node.input:
                    src = producer.get(tensor)
                    if src is not None and src.op_type == "DequantizeLinear":
                        problems.append(f"MatMul {name!r} input {tensor!r} is quantized (from {src.name!r})")
    if problems:
        raise CheckFailedError(
            "the attention (PAM/CAM) must stay in FP32: its energies exceed FP16's range and lose the softmax "
            "in INT8, but " + "; ".join(problems[:6]) + ". Exclude these nodes from the precision conversion"
        )


# ---------------------------------------------------------------------------
# all structural checks, with a precision's rules


def _check_operator_support(model: "onnx.ModelProto", path: str | os.PathLike[str] | None) -> str:
    """The real TensorRT parser where one is installed, else the hand-kept list; the check's description."""
    if path is not None:

        try:
            library = check_parses(path)
        except EngineBuildError as exc:
            raise CheckFailedError(str(exc)) from exc
        if library is not None:
            return f"parsed by the {library} ONNX parser"
    check_trt_operators(model)
    return f"operators supported by TensorRT {TRT_DOC_VERSION} ONNX parser (documented list; no TensorRT installed)"


def run_structural_checks(
    model: "onnx.ModelProto",
    *,
    attention_fp32: bool = False,
    qdq: bool = False,
    expected_attention: int = 2,
    path: str | os.PathLike[str] | None = None,
) -> StructuralReport:
    """All graph checks, with a precision's rules; ``model`` must be the output of :func:`validate_model`.

    ``attention_fp32``: the attention chains must have stayed FP32 (FP16, INT8); ``qdq``: the model
    must be quantized (INT8). Each precision states its rules (calibration.precisions: ``attention_fp32``,
    ``requires_qdq``); the FP32 export has neither.

    With ``path`` (the saved model) and TensorRT-RTX or TensorRT installed, the
    real ONNX parser decides operator support (parse only, seconds); otherwise
    the operator list transcribed from onnx-tensorrt's documentation does.
    """
    checks = ["onnx.checker(full_check) + shape inference"]
    check_opset(model)
    checks.append("opset in TensorRT range")
    checks.append(_check_operator_support(model, path))
    chains = check_attention_pattern(model, expected=expected_attention)
    checks.append(f"{len(chains)} MatMul -> Softmax -> MatMul attention chains, no decomposed softmax")
    if attention_fp32:
        check_attention_fp32(model, chains)
        checks.append("attention kept in FP32")
    pairs = check_qdq_zero_points(model)
    if qdq:
        if pairs == 0:
            raise CheckFailedError("the INT8 model has no QuantizeLinear/DequantizeLinear nodes: nothing was quantized")
        checks.append(f"{pairs} Q/DQ nodes, symmetric INT8 with zero point 0")
    return StructuralReport(checks=tuple(checks), histogram=op_histogram(model), attention=chains)


# ---------------------------------------------------------------------------


def _type_name(elem: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return str(elem)

"""Take chosen nodes of a Q/DQ model back out of INT8: FP16 where it is safe, FP32 where FP16 would overflow.

A node is taken out by rewiring each of its dequantized inputs to the float tensor in
front of the Q/DQ pair (an activation's QuantizeLinear input, or the float weight
initializer), so the node reads exactly what the FP32 model reads. Q/DQ pairs shared
with other consumers stay for those consumers; pairs left without consumers are
removed. The rest of the graph keeps its symmetric signed INT8 form, so the model
stays TensorRT-ready (a strongly typed network reads the precision of every layer
from these tensor types).

FP16 islands are ``Cast(float16) -> node (FP16 weights) -> Cast(float32)``. They are
chosen only for nodes whose activations stay well inside FP16's range on the
validation images and that do not feed an attention chain: the CAM/PAM energies
amplify any rounding of their inputs (docs/design.md section 4), so those feeders stay FP32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dacovid_export.artifacts.onnx_graph import producers
from dacovid_export.calibration.layer_error import expose_tensors
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.onnxruntime_session import open_session

if TYPE_CHECKING:
    import onnx

__all__ = [
    "FP16_SAFE_PEAK",
    "FallbackDtype",
    "FallbackNode",
    "unquantize",
    "activation_peaks",
    "choose_fallback_dtype",
]

FallbackDtype = Literal["fp16", "fp32"]
# FP16's largest finite value is 65,504; keep a 16x margin for inputs the validation images did not show
FP16_SAFE_PEAK = 65504.0 / 16


@dataclasses.dataclass(frozen=True)
class FallbackNode:
    """A node taken out of INT8 by the accuracy guard."""

    name: str
    op_type: str
    label: str  # e.g. the weight's name (its PyTorch module path), for people
    dtype: FallbackDtype
    reason: str  # why this dtype: "activations within FP16 range" / "feeds attention" / "peak 1.2e5"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FallbackNode":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def activation_peaks(
    model: "onnx.ModelProto", images: np.ndarray, nodes: Sequence[str], *, batch: int = 8
) -> dict[str, float]:
    """Largest |value| of each node's inputs and outputs when the FP32 ``model`` runs ``images``."""
    wanted = set(nodes)
    initializers = {i.name for i in model.graph.initializer}
    tensors: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.name in wanted:
            tensors[node.name] = [t for t in (*node.input, *node.output) if t and t not in initializers]
    graph_inputs = {i.name for i in model.graph.input}
    probe, _ = expose_tensors(model, {t for ts in tensors.values() for t in ts})
    session = open_session(probe, purpose="measure activation ranges", error=CheckFailedError)
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    peaks = dict.fromkeys(names, 0.0)
    peaks.update({n: 0.0 for n in graph_inputs})
    for start in range(0, len(images), batch):
        chunk = np.ascontiguousarray(images[start : start + batch], dtype=np.float32)
        peaks[input_name] = max(peaks.get(input_name, 0.0), float(np.abs(chunk).max()))
        for name, value in zip(names, session.run(names, {input_name: chunk})):
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                peaks[name] = max(peaks[name], float(np.abs(value).max()))
    return {node: max((peaks.get(t, 0.0) for t in ts), default=0.0) for node, ts in tensors.items()}


def choose_fallback_dtype(name: str, peak: float, feeders: set[str], preferred: FallbackDtype) -> tuple[FallbackDtype, str]:
    """FP16 when asked for and safe, FP32 otherwise; with the reason."""
    if preferred == "fp32":
        return "fp32", "FP32 fallback requested"
    if name in feeders:
        return "fp32", "feeds an attention chain (its energies amplify FP16 rounding)"
    if not np.isfinite(peak) or peak > FP16_SAFE_PEAK:
        return "fp32", f"activation peak {peak:.3g} too close to FP16's 65504"
    return "fp16", f"activation peak {peak:.3g}, within FP16 range"


def unquantize(model: "onnx.ModelProto", nodes: Mapping[str, FallbackDtype]) -> "onnx.ModelProto":
    """A copy of the Q/DQ ``model`` with ``nodes`` (name -> ``"fp16"``/``"fp32"``) reading float inputs again."""
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    names = {n.name for n in graph.node}
    unknown = sorted(set(nodes) - names)
    if unknown:
        raise UserInputError(f"nodes {unknown[:5]} are not in the model; cannot take them out of INT8")
    producer = producers(graph)
    initializers = {i.name: i for i in graph.initializer}

    def float_source(tensor: str) -> str | None:
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0]
        if dq.input[0] in initializers:  # an INT8 weight stored as such: dequantize it once, offline
            quantized = numpy_helper.to_array(initializers[dq.input[0]]).astype(np.float32)
            scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float32)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and scale.size > 1:
                shape = [1] * quantized.ndim
                shape[axis] = scale.size
                scale = scale.reshape(shape)
            name = f"{dq.input[0]}_float"
            if name not in initializers:
                init = numpy_helper.from_array((quantized * scale).astype(np.float32), name)
                graph.initializer.append(init)
                initializers[name] = init
            return name
        return None

    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        dtype = nodes.get(node.name)
        if dtype is None:
            new_nodes.append(node)
            continue
        for i, tensor in enumerate(node.input):
            source = float_source(tensor) if tensor else None
            if source is not None:
                node.input[i] = source
        if dtype == "fp32":
            new_nodes.append(node)
            continue
        # FP16 island: cast float inputs down (initializers converted once), outputs back up
        for i, tensor in enumerate(node.input):
            if not tensor:
                continue
            init = initializers.get(tensor)
            if init is not None:
                if init.data_type != onnx.TensorProto.FLOAT:
                    continue
                name = f"{tensor}_fp16"
                if name not in initializers:
                    half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name)
                    graph.initializer.append(half)
                    initializers[name] = half
                node.input[i] = name
            else:
                cast = f"{node.name}_in{i}_fp16"
                new_nodes.append(
                    helper.make_node("Cast", [tensor], [cast], name=f"{node.name}_cast_in{i}", to=onnx.TensorProto.FLOAT16)
                )
                node.input[i] = cast
        outputs = list(node.output)
        for j, tensor in enumerate(outputs):
            node.output[j] = f"{tensor}_fp16"
        new_nodes.append(node)
        for j, tensor in enumerate(outputs):
            new_nodes.append(
                helper.make_node("Cast", [f"{tensor}_fp16"], [tensor], name=f"{node.name}_cast_out{j}", to=onnx.TensorProto.FLOAT)
            )
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_dead(out)
    return out


def _drop_dead(model: "onnx.ModelProto") -> None:
    """Remove nodes whose outputs nobody reads (orphaned Q/DQ pairs), then unused initializers (in place)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = {t for n in graph.node for t in n.input} | outputs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {t for n in graph.node for t in n.input} | outputs
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # value_info of removed tensors would confuse shape inference
    produced = {o for n in graph.node for o in n.output}
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)

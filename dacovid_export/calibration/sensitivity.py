"""How much each quantized node costs: agreement with FP32 when that node alone is taken out of INT8.

The measured pass the field uses (Polygraphy's ``debug precision``, NNCF's accuracy control):
no recalibration, but one model copy, one ONNX Runtime session and one forward run per
candidate, so the INT8 guard measures only the few nodes :mod:`calibration.layer_error`
ranks first (``GuardConfig.measured_candidates``). Only images that can flip are used for
the ranking: those INT8 already flips, then those with the smallest FP32 top-2 margin;
an image whose margin is far above the logit error cannot change its answer whichever
node is restored. Nodes are ranked by the answers they fix, then by how much they shrink
the mean |Δlogit| (a continuous tie-break on a discrete measure).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.artifacts.onnx_graph import producers
from dacovid_export.calibration.fallback import FallbackDtype, unquantize
from dacovid_export.core.errors import CheckFailedError
from dacovid_export.core.onnxruntime_session import open_session, session_logits
from dacovid_export.core.openvino_model import OpenVINORunner
from dacovid_export.core.progress import progress_bar
from dacovid_export.data.agreement import Agreement, measure_agreement

if TYPE_CHECKING:
    import onnx

__all__ = [
    "onnx_logits",
    "openvino_logits",
    "at_risk_images",
    "NodeSensitivity",
    "rank_nodes",
    "labels_from_weights",
]


def onnx_logits(model: "onnx.ModelProto | bytes", images: np.ndarray, *, batch: int = 16) -> np.ndarray:
    """Logits of ``model`` on ``images`` with ONNX Runtime's CPU provider (the guard's reference runtime)."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return session_logits(open_session(data, purpose="run the accuracy guard", error=CheckFailedError), images, batch=batch)


def openvino_logits(path: str, images: np.ndarray, *, batch: int = 16) -> np.ndarray | None:
    """Logits of the ONNX file ``path`` under OpenVINO's CPU plugin with FP32 inference precision; None without openvino."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return None
    # fp32 set explicitly: OpenVINO's CPU default on BF16-capable CPUs is BF16 (docs/design.md section 5)
    return OpenVINORunner(path, inference_precision="fp32").logits(images, batch=batch)


def at_risk_images(reference: np.ndarray, candidate: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the images a node can flip: the flipped ones, then the smallest FP32 margins (``limit`` in all)."""
    ordered = np.sort(reference, axis=1)
    margin = ordered[:, -1] - ordered[:, -2]
    flipped = candidate.argmax(axis=1) != reference.argmax(axis=1)
    order = np.lexsort((margin, ~flipped))  # flipped first, then by margin
    return np.sort(order[: max(1, min(limit, len(order)))])


@dataclasses.dataclass(frozen=True)
class NodeSensitivity:
    """Agreement on the at-risk images when ``node`` alone leaves INT8."""

    node: str
    op_type: str
    label: str
    agreement: Agreement
    fixed: int  # answers (on the at-risk images) this node's fallback restores, net of new flips
    error_share: float | None = None  # what put it among the measured: :class:`calibration.layer_error.LayerError` share

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "op_type": self.op_type, "label": self.label, "fixed": self.fixed,
                **({} if self.error_share is None else {"error_share": self.error_share}),
                **{f"ranking_{k}": v for k, v in self.agreement.to_dict().items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NodeSensitivity":
        ranking = {k.removeprefix("ranking_"): v for k, v in data.items() if k.startswith("ranking_")}
        share = data.get("error_share")
        return cls(data["node"], data["op_type"], data["label"], Agreement.from_dict(ranking), int(data["fixed"]),
                   None if share is None else float(share))


def rank_nodes(
    quantized: "onnx.ModelProto",
    candidates: Mapping[str, FallbackDtype],
    images: np.ndarray,
    reference: np.ndarray,
    baseline: np.ndarray,
    *,
    labels: Mapping[str, str] | None = None,
    evaluate: Callable[["onnx.ModelProto", np.ndarray], np.ndarray] = onnx_logits,
    progress: bool = True,
) -> list[NodeSensitivity]:
    """Rank ``candidates`` (node -> fallback dtype) by what taking each alone out of INT8 restores, best first.

    ``images``/``reference``/``baseline``: the at-risk images, their FP32 logits and the
    INT8 model's logits on them.
    """
    ops = {n.name: n.op_type for n in quantized.graph.node}
    base_correct = int(np.sum(baseline.argmax(axis=1) == reference.argmax(axis=1)))
    ranked: list[NodeSensitivity] = []
    bar = progress_bar(list(candidates.items()), desc="INT8 sensitivity", unit="node", enabled=progress, auto=True)
    for name, dtype in bar:
        logits = evaluate(unquantize(quantized, {name: dtype}), images)
        agreement = measure_agreement(reference, logits)
        correct = int(round(agreement.agreement * agreement.images))
        ranked.append(NodeSensitivity(name, ops.get(name, "?"), (labels or {}).get(name, name), agreement, correct - base_correct))
    bar.close()
    ranked.sort(key=lambda s: (-s.agreement.agreement, s.agreement.mean_abs_dlogit, s.node))
    return ranked


def labels_from_weights(model: "onnx.ModelProto", names: Sequence[str]) -> dict[str, str]:
    """Node name -> the name of its weight tensor (the PyTorch module path in this project's exports)."""
    producer = producers(model.graph)
    initializers = {i.name for i in model.graph.initializer}
    wanted = set(names)
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.name not in wanted or len(node.input) < 2:
            continue
        tensor = node.input[1]
        # walk up through the weight's DQ (and Q) to the initializer
        for _ in range(3):
            if tensor in initializers:
                break
            parent = producer.get(tensor)
            if parent is None:
                break
            tensor = parent.input[0]
        if tensor in initializers:
            out[node.name] = tensor.removesuffix(".weight")
    return out

"""How much each quantized node costs: agreement with FP32 when that node alone is taken out of INT8.

The cheap pass the field uses (Polygraphy's ``debug precision``, NNCF's accuracy control):
no recalibration, one forward run per candidate. Only images that can flip are used for
the ranking: those INT8 already flips, then those with the smallest FP32 top-2 margin;
an image whose margin is far above the logit error cannot change its answer whichever
node is restored. Nodes are ranked by the answers they fix, then by how much they shrink
the mean |Δlogit| (a continuous tie-break on a discrete measure).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from dacovid_export.artifacts.onnx_graph import producers
from dacovid_export.calibration.fallback import FallbackDtype, unquantize

if TYPE_CHECKING:
    import onnx

__all__ = [
    "Agreement",
    "measure_agreement",
    "onnx_logits",
    "openvino_logits",
    "at_risk_images",
    "NodeSensitivity",
    "rank_nodes",
    "labels_from_weights",
]


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Top-1 agreement and logit error of a candidate against FP32 reference logits."""

    images: int
    agreement: float
    median_abs_dlogit: float
    max_abs_dlogit: float
    mean_abs_dlogit: float

    def describe(self) -> str:
        return (
            f"agreement {self.agreement:.2%} on {self.images} images, |Δlogit| median {self.median_abs_dlogit:.3g} "
            f"max {self.max_abs_dlogit:.3g}"
        )

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    def key(self) -> tuple[float, float]:
        """Sort key, larger is better: agreement first, then a smaller mean logit error."""
        return (self.agreement, -self.mean_abs_dlogit)


def measure_agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """Compare N x K logits: share of equal arg-max, and |Δlogit| over all entries."""
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    return Agreement(
        images=int(len(reference)),
        agreement=float(np.mean(candidate.argmax(axis=1) == reference.argmax(axis=1))) if len(reference) else 0.0,
        median_abs_dlogit=float(np.median(diff)) if diff.size else 0.0,
        max_abs_dlogit=float(diff.max()) if diff.size else 0.0,
        mean_abs_dlogit=float(diff.mean()) if diff.size else 0.0,
    )


def onnx_logits(model: "onnx.ModelProto | bytes", images: np.ndarray, *, batch: int = 16) -> np.ndarray:
    """Logits of ``model`` on ``images`` with ONNX Runtime's CPU provider (the guard's reference runtime)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    step = fixed or batch
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start : start + step], dtype=np.float32)
        real = len(chunk)
        if fixed is not None and real < fixed:  # a static-batch model: pad the last chunk
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - real, axis=0)])
        out.append(np.asarray(session.run(None, {name: chunk})[0])[:real].astype(np.float32))
    return np.concatenate(out)


def openvino_logits(path: str, images: np.ndarray, *, batch: int = 16) -> np.ndarray | None:
    """Logits of the ONNX file ``path`` under OpenVINO's CPU plugin with FP32 inference precision; None without openvino."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return None
    import openvino as ov

    core = ov.Core()
    # f32 set explicitly: OpenVINO's CPU default on BF16-capable CPUs is BF16 (docs/design.md section 5)
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out = []
    for start in range(0, len(images), batch):
        request.infer({0: np.ascontiguousarray(images[start : start + batch], dtype=np.float32)})
        out.append(np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True))
    return np.concatenate(out)


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

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "op_type": self.op_type, "label": self.label, "fixed": self.fixed,
                **{f"ranking_{k}": v for k, v in self.agreement.to_dict().items()}}


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
    from tqdm import tqdm

    ops = {n.name: n.op_type for n in quantized.graph.node}
    base_correct = int(np.sum(baseline.argmax(axis=1) == reference.argmax(axis=1)))
    ranked: list[NodeSensitivity] = []
    bar = tqdm(
        list(candidates.items()), desc="INT8 sensitivity", unit="node", file=sys.stderr, leave=False, disable=None if progress else True
    )
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

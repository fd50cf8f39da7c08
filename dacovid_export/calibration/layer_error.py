"""Per-node error statistic: how much error each node ADDS when the model runs in reduced precision.

The guards' first, cheap ranking (:mod:`calibration.guard` for INT8, :mod:`calibration.fp16_guard`
for FP16): the FP32 model and the reduced model (Q/DQ INT8, or AutoCast's mixed FP16) run ONCE
each on the same images, with every candidate node's float inputs and outputs exposed as extra
graph outputs. Restoring one node at a time and re-running the whole model (the old ranking, still
used for the few top candidates: :func:`calibration.sensitivity.rank_nodes`) costs one session
and one pass per node; this costs two passes for all nodes together.

The statistic, per node ``n`` with output ``y`` and float inputs ``x_i`` (what Polygraphy's
layerwise comparison and AIMET's per-layer SQNR look at, made local to the node):

    added(n)     = rel(y) - inherited(n)
    rel(t)       = ||t_reduced - t_fp32|| / ||t_fp32||                       (relative L2 error)
    inherited(n) = max_i max(rel(x_i), rms(x_i,reduced - x_i,fp32) / rms(y_fp32))

with the norms over the whole tensor and all images (sums of squares accumulate batch by batch,
so memory holds one batch of exposed tensors; RMS divides by the element count, since a pooling
or a flatten changes it). ``rel(y)`` alone would blame every node downstream of the first bad
one: error propagates. ``inherited`` is what a node passes on without adding anything: a layer
with gain scales the error with the signal (relative error kept: ``rel(x_i)``); a shift or a
cancellation (``y = x - 400``) passes the ABSOLUTE error on while the signal shrinks, which a
relative-only rule would blame on the subtraction; the larger of the two is credited to the
inputs. What is left includes the rounding of the node's own inputs (the Q/DQ pair, or
AutoCast's cast to FP16, sits between the input tensor named in the FP32 graph and the node,
so it counts against the node whose precision it serves). Relative, not absolute, errors
overall: FP16 and INT8 rounding are relative to each tensor's range, and tensors differ in
scale by orders of magnitude. A node that shrinks error (an average, a ReLU cutting noise)
gets a negative ``added``.

Ranking (:func:`rank_by_error_share`) is by ``share(n) = added(n) / rel(y)``: the part of the
error at the node's output that the node itself put there, not by ``added`` itself. Error grows
through a deep network (on a 3-epoch DA-COVID Net at 64 px, calibrated INT8: 1.6% relative error
after the stem, 96% before the head), and what enters early is amplified with everything after
it, so 1.5% added by the stem costs more answers than 17% added by a block near the head:
restoring a node removes about its share of the error it passes on. On that checkpoint
``added`` put the backbone's last blocks first, and taking 11 of them out of INT8 restored no
answers, while ``share`` puts the stem, the max-pool and the first block first, the nodes
whose restoration alone had fixed the most answers. The first node of a chain always has a
share of 1 (nothing reaches it with error): ``added`` breaks ties, and the guard measures the
top ones by restoration before trusting the order.

Tensor names: both converters keep the FP32 graph's tensor names for every node output
(Model Optimizer's Q/DQ insertion puts the pair after the tensor; AutoCast and the INT8
guard's FP16 islands put casts in front of a node and rename only the cast tensors, then cast
back to the original name). A tensor the reduced model does not have (a node the converter
removed or renamed) is skipped: a node whose output is missing gets no statistic, a missing
input does not count. Integer tensors (shapes, indices) carry no rounding error and are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from dacovid_export.core.errors import CheckFailedError
from dacovid_export.core.onnxruntime_session import open_session

if TYPE_CHECKING:
    import onnx

__all__ = ["LayerError", "expose_tensors", "layer_errors", "rank_by_error_share"]

# at 224 px one DA-COVID Net image exposes ~0.5 GB of tensors per model (both are held at once)
DEFAULT_BATCH = 4


@dataclasses.dataclass(frozen=True)
class LayerError:
    """One node's output error (relative L2, reduced model vs FP32) and the part of it its inputs brought."""

    node: str
    output_error: float
    inherited: float

    @property
    def added(self) -> float:
        """The error this node adds on top of what reaches it (negative: it shrinks error)."""
        return self.output_error - self.inherited

    @property
    def share(self) -> float:
        """The part of the error at this node's output that it added itself (0 when it shrinks error)."""
        if not self.output_error > 0 or self.output_error == float("inf"):
            return 0.0
        return max(0.0, self.added / self.output_error)


def expose_tensors(model: "onnx.ModelProto", tensors: Iterable[str]) -> tuple[bytes, list[str]]:
    """``model`` serialized with ``tensors`` as extra graph outputs, and the names it can expose.

    Graph inputs, initializers and tensors no node produces are left out (they are not computed
    values); outputs are added untyped, and ONNX Runtime infers their types.
    """
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    produced = {t for node in probe.graph.node for t in node.output if t}
    existing = {o.name for o in probe.graph.output}
    exposed = sorted(set(tensors) & produced)
    for name in exposed:
        if name not in existing:
            probe.graph.output.add().name = name
    return probe.SerializeToString(), exposed


def _node_tensors(model: "onnx.ModelProto", nodes: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Node -> (its non-initializer inputs, its outputs) in the FP32 ``model``."""
    wanted = set(nodes)
    initializers = {i.name for i in model.graph.initializer}
    out: dict[str, tuple[list[str], list[str]]] = {}
    for node in model.graph.node:
        if node.name in wanted:
            out[node.name] = ([t for t in node.input if t and t not in initializers], [t for t in node.output if t])
    return out


def layer_errors(
    reference: "onnx.ModelProto",
    reduced: "onnx.ModelProto",
    images: np.ndarray,
    nodes: Sequence[str],
    *,
    batch: int = DEFAULT_BATCH,
) -> dict[str, LayerError]:
    """Per node of ``nodes`` (names in the FP32 ``reference``), its :class:`LayerError` on ``images``.

    One pass of each model over ``images`` (float32 ``N x 3 x S x S``). Nodes whose output the
    reduced model lacks, or whose outputs are not floating point, are absent from the result.
    """
    tensors = _node_tensors(reference, nodes)
    wanted = {t for ins, outs in tensors.values() for t in (*ins, *outs)}
    ref_bytes, ref_names = expose_tensors(reference, wanted)
    red_bytes, red_names = expose_tensors(reduced, wanted)
    common = sorted(set(ref_names) & set(red_names))
    ref_session = open_session(ref_bytes, purpose="measure per-layer errors", error=CheckFailedError)
    red_session = open_session(red_bytes, purpose="measure per-layer errors", error=CheckFailedError)
    input_name = ref_session.get_inputs()[0].name
    red_input = red_session.get_inputs()[0].name
    fixed = ref_session.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) and fixed > 0 else max(1, batch)
    noise = dict.fromkeys(common, 0.0)
    signal = dict.fromkeys(common, 0.0)
    count = dict.fromkeys(common, 0)
    floating: set[str] = set(common)
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start : start + step], dtype=np.float32)
        real = len(chunk)
        if real < step and isinstance(fixed, int) and fixed > 0:  # a static-batch model: pad, then drop the padding
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - real, axis=0)])
        expected = ref_session.run(common, {input_name: chunk})
        got = red_session.run(common, {red_input: chunk})
        for name, a, b in zip(common, expected, got):
            a, b = np.asarray(a), np.asarray(b)
            if not (np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating)) or a.shape != b.shape:
                floating.discard(name)
                continue
            # float32 BLAS dot products: 7x faster than float64 sums here, and a ranking needs no more digits
            a = np.ascontiguousarray(a[:real], dtype=np.float32).ravel()
            diff = np.ascontiguousarray(b[:real], dtype=np.float32).ravel() - a
            noise[name] += float(np.dot(diff, diff))
            signal[name] += float(np.dot(a, a))
            count[name] += a.size

    def ratio(err: float, ref: float) -> float:
        if ref == 0.0:
            return 0.0 if err == 0.0 else float("inf")
        return float(np.sqrt(err / ref))

    graph_inputs = {i.name for i in reference.graph.input}
    out: dict[str, LayerError] = {}
    for node, (ins, outs) in tensors.items():
        outs = [t for t in outs if t in floating]
        if not outs:
            continue
        y = max(outs, key=lambda t: ratio(noise[t], signal[t]))  # a node's worst output speaks for it
        inherited = 0.0  # the images themselves are exact in both models; an input neither model exposes does not count
        for x in ins:
            if x in floating and x not in graph_inputs:
                inherited = max(
                    inherited,
                    ratio(noise[x], signal[x]),
                    ratio(noise[x] / max(count[x], 1), signal[y] / max(count[y], 1)),
                )
        out[node] = LayerError(node, ratio(noise[y], signal[y]), inherited)
    return out


def rank_by_error_share(errors: dict[str, LayerError], nodes: Sequence[str]) -> list[str]:
    """``nodes`` ordered by their share of the error they pass on, most first (then by the error added).

    Nodes without a statistic come last, in their given order.
    """

    def key(n: str) -> tuple[float, float, str]:
        added = errors[n].added
        return (-errors[n].share, -added if added == added else 0.0, n)  # NaN (inf - inf): no evidence either way

    measured = sorted((n for n in nodes if n in errors), key=key)
    return measured + [n for n in nodes if n not in errors]

"""A four-convolution ONNX classifier whose INT8 accuracy is decided by construction (for the guard's tests).

Each image is a constant gray level per channel plus a little noise, so the pooled
features, and FP32's answer, differ clearly between images. The convolutions carry the
channels through almost unchanged (identity centre tap), so INT8 rounding barely moves
the logits: the easy model quantizes to the same answers. ``hard=True`` adds, in
``conv2`` only, one huge weight per output channel on an input channel that is always
zero: FP32 does not notice it, but per-channel INT8 weight scales then round every other
weight of ``conv2`` to zero, so ``conv2`` is the one node the guard must take out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

HARD_NODE = "conv2"
SIZE = 32
CHANNELS = 32


def toy_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.0, 3.0, (n, 3, 1, 1))
    return (levels + rng.normal(0.0, 0.05, (n, 3, SIZE, SIZE))).astype(np.float32)


def toy_set(n: int, seed: int, name: str):
    """A CalibrationSet of ``toy_images`` (paths are labels only; nothing is read from disk)."""
    from dacovid_export.calibration import CalibrationSet
    from dacovid_export.data.preprocessing import Preprocessing

    array = toy_images(n, seed)
    array.flags.writeable = False
    root = Path(f"/toy/{name}")
    return CalibrationSet(
        array=array,
        paths=tuple(root / f"{i:03d}.png" for i in range(n)),
        sha256=hashlib.sha256(array.tobytes()).hexdigest(),
        root=root,
        preprocessing=Preprocessing(image_size=SIZE),
        class_counts={"": n},
        requested_size=n,
        seed=seed,
    )


def make_toy_classifier(path: Path, *, hard: bool, seed: int = 0) -> Path:
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(name: str, x: str, weight: np.ndarray) -> str:
        bias = np.zeros(weight.shape[0], np.float32)
        inits.extend([numpy_helper.from_array(weight, f"{name}.weight"), numpy_helper.from_array(bias, f"{name}.bias")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_out"], name=name, pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu"))
        return f"{name}_relu"

    def carry(cin: int) -> np.ndarray:
        w = rng.normal(0.0, 0.01, (CHANNELS, cin, 3, 3)).astype(np.float32)
        for c in range(CHANNELS):
            w[c, c % cin, 1, 1] += 1.0
        return w

    first = carry(3)
    first[0] = 0.0  # channel 0 of conv1 is always zero
    x = conv("conv1", "input", first)
    second = carry(CHANNELS)
    second[0] = 0.0
    if hard:
        second[:, 0, 1, 1] = 1000.0
    x = conv(HARD_NODE, x, second)
    x = conv("conv3", x, carry(CHANNELS))
    x = conv("conv4", x, carry(CHANNELS))
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flat"))
    head = rng.normal(0.0, 1.0, (CHANNELS, 3)).astype(np.float32)
    inits.append(numpy_helper.from_array(head, "fc.weight"))
    inits.append(numpy_helper.from_array((-1.5 * head.sum(0)).astype(np.float32), "fc.bias"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc"))
    return _save_classifier(path, "toy", nodes, inits)


FP16_HARD_NODE = "conv"


def make_fp16_toy(path: Path, *, offset: float = 400.0, seed: int = 0) -> Path:
    """A one-convolution classifier whose FP16 answers are wrong by construction (for the FP16 guard's tests).

    The 1x1 convolution's bias is ``offset`` plus per-class tenths (under AutoCast's ``data_max`` of
    512, so AutoCast converts it); pooling and a final ``Add(-offset)`` make the logits. FP16's
    spacing between 256 and 512 is 0.25, so the FP16 bias loses the class tenths and many answers
    change (ONNX Runtime's CPU runs FP16 Conv in FP32 between casts, but the weights it gets are
    the rounded FP16 ones); kept FP32, the convolution is exact.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 0.1, (3, 3, 1, 1)).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "conv.weight"),
        numpy_helper.from_array((offset + np.array([0.0, 0.12, -0.12])).astype(np.float32), "conv.bias"),
        numpy_helper.from_array(np.array(-offset, np.float32), "minus_offset"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name=FP16_HARD_NODE),
        helper.make_node("GlobalAveragePool", ["conv_out"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Add", ["flat", "minus_offset"], ["logits"], name="unshift"),
    ]
    return _save_classifier(path, "fp16toy", nodes, inits)


def _save_classifier(path: Path, name: str, nodes: list, inits: list) -> Path:
    """Write an opset-20 graph ``input`` (N x 3 x SIZE x SIZE) -> ``logits`` (N x 3) to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path

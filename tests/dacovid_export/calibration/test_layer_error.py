"""Per-node added error: one pass of each model finds the node the toys make hard for INT8 and for FP16."""

from __future__ import annotations

import pytest

from tests.helpers.guard_toy import (
    FP16_HARD_NODE,
    HARD_NODE,
    make_fp16_toy,
    make_toy_classifier,
    toy_set,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.onnx.quantization")
pytest.importorskip("onnxruntime")

from dacovid_export.calibration.layer_error import (  # noqa: E402
    expose_tensors,
    layer_errors,
    rank_by_error_share,
)


@pytest.fixture(scope="module")
def toys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from dacovid_export.calibration import convert_fp16, quantize_int8

    root = tmp_path_factory.mktemp("layer_error")
    calibration = toy_set(16, seed=1, name="calibration")
    hard = make_toy_classifier(root / "hard.onnx", hard=True)
    quantize_int8(hard, root / "hard.int8.onnx", calibration=calibration, cache_dir=root / "cache")
    fp16 = make_fp16_toy(root / "fp16toy.onnx")
    convert_fp16(fp16, root / "fp16toy.fp16.onnx", calibration=calibration)
    return {
        "int8": (onnx.load(str(hard)), onnx.load(str(root / "hard.int8.onnx"))),
        "fp16": (onnx.load(str(fp16)), onnx.load(str(root / "fp16toy.fp16.onnx"))),
        "images": toy_set(24, seed=2, name="validation").array,
    }


def test_the_int8_hard_node_adds_the_most_error_and_its_successors_only_inherit_it(toys: dict) -> None:
    reference, quantized = toys["int8"]
    convs = ["conv1", "conv2", "conv3", "conv4"]
    errors = layer_errors(reference, quantized, toys["images"], convs, batch=5)  # 5: the last batch is partial
    # conv1 (nothing reaches it with error) has a share of 1 whatever it adds; conv2 is next, all the others far behind
    assert rank_by_error_share(errors, convs)[:2] == ["conv1", HARD_NODE]
    assert errors[HARD_NODE].added > 0.5 and errors[HARD_NODE].share > 0.9  # INT8 zeroes conv2's useful weights
    # conv3 and conv4 pass conv2's error on: what they add themselves is small
    assert errors["conv3"].inherited > 0.5 and abs(errors["conv3"].added) < 0.05 and errors["conv3"].share < 0.05


def test_the_fp16_hard_node_ranks_first_and_a_cancelling_shift_is_not_blamed(toys: dict) -> None:
    reference, converted = toys["fp16"]
    nodes = [n.name for n in reference.graph.node]
    errors = layer_errors(reference, converted, toys["images"], nodes)
    assert rank_by_error_share(errors, nodes)[0] == FP16_HARD_NODE
    # "unshift" (x - 400) turns the bias's small relative error into a large one; it passes the absolute error on
    assert errors["unshift"].output_error > 0.1 and errors["unshift"].added < 0.01 < errors["unshift"].output_error


def test_nodes_without_a_statistic_rank_last_in_their_order(toys: dict) -> None:
    reference, quantized = toys["int8"]
    errors = layer_errors(reference, quantized, toys["images"][:4], ["conv1", "conv2"])
    assert rank_by_error_share(errors, ["missing_b", "conv1", "missing_a", "conv2"]) == ["conv1", "conv2", "missing_b", "missing_a"]


def test_expose_tensors_adds_only_computed_tensors(toys: dict) -> None:
    reference, _ = toys["int8"]
    data, exposed = expose_tensors(reference, {"input", "conv1.weight", "conv2_out", "no_such_tensor", "logits"})
    assert exposed == ["conv2_out", "logits"]
    probe = onnx.load_from_string(data)
    assert [o.name for o in probe.graph.output] == ["logits", "conv2_out"]  # the graph output is not added twice
    assert len(reference.graph.output) == 1  # the caller's model is not changed

"""The one ONNX Runtime session factory: explicit options, one-line errors of the caller's kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.onnxruntime_session import (
    open_session,
    run_session,
    session_options,
)


def test_options_are_explicit() -> None:
    import onnxruntime as ort

    options = session_options(ort, intra_op_threads=2, graph_optimization="basic")
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert session_options(ort).graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize(
    "options, message",
    [({"intra_op_threads": 0}, "intra_op_threads=0"), ({"graph_optimization": "max"}, "graph_optimization='max'")],
)
def test_bad_options_quote_the_value(options: dict, message: str) -> None:
    import onnxruntime as ort

    with pytest.raises(UserInputError, match=message):
        session_options(ort, **options)


def test_load_errors_are_one_line_of_the_callers_kind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserInputError, match="ONNX Runtime could not load") as info:
        open_session(bad, purpose="run the test")
    assert "\n" not in str(info.value)
    with pytest.raises(CheckFailedError, match="could not load the model"):
        open_session(b"not a model", purpose="run the test", error=CheckFailedError)


def test_path_and_bytes_give_one_session(make_toy_onnx, tmp_path: Path) -> None:
    path = make_toy_onnx(tmp_path / "toy.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    from_path = run_session(open_session(path, purpose="run the test"), x)
    from_bytes = run_session(open_session(path.read_bytes(), purpose="run the test"), x)
    assert from_path.dtype == np.float32
    np.testing.assert_allclose(from_path, x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(from_path, from_bytes)
    with pytest.raises(CheckFailedError, match="failed on a batch of shape"):
        run_session(open_session(path, purpose="run the test"), x[:, :2])


def test_session_logits_pads_a_static_batch_and_drops_the_padding(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.core.onnxruntime_session import session_logits

    static = make_toy_onnx(tmp_path / "static.onnx", batch=2, image_size=32)  # logits = channel means, one batch size only
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    got = session_logits(open_session(static, purpose="run the test"), x, batch=4)  # 2 + 2 + 1 padded to 2
    np.testing.assert_allclose(got, x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    dynamic = make_toy_onnx(tmp_path / "dynamic.onnx", image_size=32)
    assert session_logits(open_session(dynamic, purpose="run the test"), x, batch=2).shape == (5, 3)

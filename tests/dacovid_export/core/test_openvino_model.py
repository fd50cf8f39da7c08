"""OpenVINO's one runner core: the precision hint always set, one compile, batched logits like the backend's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from dacovid_export.core.errors import UserInputError  # noqa: E402
from dacovid_export.core.openvino_model import OpenVINORunner, check_openvino_options  # noqa: E402


def test_runner_sets_f32_and_runs_any_number_of_images(make_toy_onnx, tmp_path: Path) -> None:
    model = make_toy_onnx(tmp_path / "toy.onnx", image_size=32)  # logits = channel means
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    runner = OpenVINORunner(model, inference_precision="fp32", threads=1)
    import openvino as ov

    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32 and runner.outputs == 1
    np.testing.assert_allclose(runner.logits(x, batch=2), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    runner.close()
    runner.close()  # idempotent


@pytest.mark.parametrize(
    ("precision", "threads", "message"),
    [("f16", None, "inference_precision='f16'"), (None, 0, "threads=0"), (None, True, "threads=True")],
)
def test_options_are_checked_with_the_value_quoted(precision, threads, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        check_openvino_options(precision, threads)

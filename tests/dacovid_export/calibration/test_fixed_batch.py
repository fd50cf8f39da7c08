"""Models exported with a fixed batch size get calibration data in whole batches of that size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dacovid_export.calibration import convert_fp16, load_calibration_set, quantize_int8
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import Preprocessing
from tests.helpers.precision import run_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.onnx")

BATCH = 4


@pytest.fixture(scope="module")
def fixed_batch_onnx(torch_fp32_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny export with its batch dimension pinned to 4 (the graph reads shapes at run time)."""
    model = onnx.load(str(torch_fp32_onnx))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = BATCH
    del model.graph.value_info[:]
    path = tmp_path_factory.mktemp("fixed") / "fixed.onnx"
    onnx.save(model, str(path))
    return path


def test_fixed_batch_fp16_and_int8(fixed_batch_onnx: Path, synthetic_dir: Path, tmp_path: Path, capsys) -> None:
    calib = load_calibration_set(synthetic_dir, Preprocessing(image_size=64), size=10, seed=0)
    fp16 = convert_fp16(fixed_batch_onnx, tmp_path / "fp16.onnx", calibration=calib, max_range_images=6)
    assert fp16.details["range_check_images"] == BATCH  # 6 rounded down to whole batches
    int8 = quantize_int8(fixed_batch_onnx, tmp_path / "int8.onnx", calibration=calib, cache_dir=tmp_path / "cache")
    assert "fixed batch of 4; using 8 of 10 calibration images" in capsys.readouterr().err
    assert int8.details["qdq"]["quantize_nodes"] > 0
    x = np.ascontiguousarray(calib.array[:BATCH])
    reference = run_onnx(fixed_batch_onnx, x)
    for name in ("fp16.onnx", "int8.onnx"):
        logits = run_onnx(tmp_path / name, x)
        assert logits.shape == (BATCH, 3) and np.isfinite(logits).all()
        assert np.abs(logits - reference).max() < 0.25 * np.abs(reference).max()


def test_fewer_images_than_the_fixed_batch(fixed_batch_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="fixed batch of 4"):
        convert_fp16(fixed_batch_onnx, tmp_path / "o.onnx", calibration=np.zeros((3, 3, 64, 64), dtype=np.float32))

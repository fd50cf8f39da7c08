"""Fixtures for the precision-step tests: a plain torch.onnx FP32 export of the tiny model and calibration images.

The export is done here with torch.onnx (dynamo) rather than through dacovid_export's own
exporter, so these tests do not depend on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.precision import export_fp32_onnx


@pytest.fixture(scope="session")
def torch_fp32_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` through torch.onnx alone (a marker in its metadata, none of dacovid-export's).

    Named apart from tests/conftest.py's ``tiny_fp32_onnx`` (dacovid-export's own export,
    with metadata), which tests of ``convert_precision`` in this folder need.
    """
    return export_fp32_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_calibration_set(synthetic_dir: Path):
    from dacovid_export.calibration import load_calibration_set
    from dacovid_export.data.preprocessing import Preprocessing

    # tiny_checkpoint and synthetic_dir are 64 x 64 (tests/conftest.py)
    return load_calibration_set(synthetic_dir, Preprocessing(image_size=64), size=12, seed=0)

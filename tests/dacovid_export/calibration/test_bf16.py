"""BF16 guard: OpenVINO BF16 judged against FP32 like INT8, passing or refusing on the agreement, never silent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dacovid_export.calibration import bf16
from dacovid_export.calibration.bf16 import Bf16GuardConfig, guard_bf16
from dacovid_export.calibration.data import load_calibration_set, load_validation_set
from dacovid_export.calibration.sensitivity import onnx_logits
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.data.preprocessing import Preprocessing
from tests.helpers import tiny

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def validation(synthetic_dir: Path):
    return load_validation_set(synthetic_dir, Preprocessing(image_size=tiny.TINY_IMAGE_SIZE), size=12, seed=0)


def _reference(model: Path, images: np.ndarray) -> np.ndarray:
    return onnx_logits(model.read_bytes(), images)


def test_guard_passes_and_refuses_on_the_agreement(tiny_fp32_onnx: Path, validation, monkeypatch) -> None:
    ref = _reference(tiny_fp32_onnx, validation.array)
    flipped = ref.copy()
    # BF16 made to change exactly 3 answers of 12: swap the top-1 and the lowest logit of the first three images
    for i in range(3):
        top, low = ref[i].argmax(), ref[i].argmin()
        flipped[i, top], flipped[i, low] = ref[i, low], ref[i, top]
    monkeypatch.setattr(bf16, "openvino_bf16_logits", lambda path, images, threads=None: flipped)
    report = guard_bf16(tiny_fp32_onnx, validation, Bf16GuardConfig(min_agreement=0.75))
    assert report.passed and report.agreement.images == 12 and report.agreement.agreement == pytest.approx(0.75)
    assert "75.0%" in report.lines()[0] and report.to_dict()["validation"]["images"] == 12
    with pytest.raises(CheckFailedError, match=r"BF16 refused .*agreement with FP32 75\.0% on 12 .*below min_agreement 76\.0%"):
        guard_bf16(tiny_fp32_onnx, validation, Bf16GuardConfig(min_agreement=0.76))
    nan = np.full_like(ref, np.nan)
    monkeypatch.setattr(bf16, "openvino_bf16_logits", lambda path, images, threads=None: nan)
    with pytest.raises(CheckFailedError, match="BF16 refused"):
        guard_bf16(tiny_fp32_onnx, validation, Bf16GuardConfig(min_agreement=0.0))  # non-finite never passes


def test_real_bf16_on_this_cpu(tiny_fp32_onnx: Path, validation) -> None:
    from dacovid_export.core.openvino_model import cpu_supports_bf16

    if not cpu_supports_bf16():
        with pytest.raises(UserInputError, match="no BF16 support"):
            guard_bf16(tiny_fp32_onnx, validation, Bf16GuardConfig(min_agreement=0.0))
        return
    report = guard_bf16(tiny_fp32_onnx, validation, Bf16GuardConfig(min_agreement=0.0, threads=1))
    got = bf16.openvino_bf16_logits(tiny_fp32_onnx, validation.array, threads=1)
    ref = _reference(tiny_fp32_onnx, validation.array)
    assert report.agreement.agreement == pytest.approx(float(np.mean(got.argmax(1) == ref.argmax(1))))
    # BF16 really ran: 8 bits of mantissa move the logits, but not far
    assert 0 < report.agreement.max_abs_dlogit < 0.1 * float(np.abs(ref).max()) + 0.5


def test_guard_refuses_wrong_inputs(tiny_fp32_onnx: Path, make_toy_onnx, synthetic_dir: Path, validation, tmp_path: Path) -> None:
    int8 = make_toy_onnx(tmp_path / "toy.int8.onnx", precision="int8")
    with pytest.raises(UserInputError, match="BF16 runs an FP32 ONNX model"):
        guard_bf16(int8, validation)
    other_size = load_validation_set(synthetic_dir, Preprocessing(image_size=32), size=6, seed=0)
    with pytest.raises(UserInputError, match="validation images are 32x32, the model takes 64x64"):
        guard_bf16(tiny_fp32_onnx, other_size)
    calib = load_calibration_set(synthetic_dir, Preprocessing(image_size=tiny.TINY_IMAGE_SIZE), size=24, seed=0)
    with pytest.raises(UserInputError):  # validation images shared with another step's images: refused
        guard_bf16(tiny_fp32_onnx, validation, exclude=calib)
    with pytest.raises(UserInputError, match="min_agreement=1.5"):
        Bf16GuardConfig(min_agreement=1.5)
    with pytest.raises(UserInputError, match="threads=0"):
        Bf16GuardConfig(threads=0)


def test_bf16_agreement_on_real_images(real_data_dir: Path) -> None:
    """On real X-rays (DACOVID_REAL_DATA), with a checkpoint trained on them when one is named."""
    import os

    model = os.environ.get("DACOVID_BF16_MODEL")
    if not model:
        pytest.skip("DACOVID_BF16_MODEL is not set: name an FP32 ONNX export of a checkpoint trained on DACOVID_REAL_DATA")
    from dacovid_export.artifacts.read import read_artifact_info

    info = read_artifact_info(model)
    held_out = os.environ.get("DACOVID_BF16_IMAGES", str(real_data_dir))
    images = load_validation_set(held_out, info.preprocessing, size=256, seed=0)
    report = guard_bf16(model, images)  # the default target, 99%: refused (CheckFailedError) below it
    print(*report.lines())
    assert report.passed and report.agreement.images >= 4


def test_cli_exit_codes(tiny_fp32_onnx: Path, synthetic_dir: Path, monkeypatch) -> None:
    from dacovid_export.cli.main import cli
    from tests.helpers.cli import error_lines, invoke

    args = ["bf16-guard", tiny_fp32_onnx, "--validation-data", synthetic_dir, "--size", "12"]
    bad = invoke(cli, [*args, "--min-agreement", "1.5"])
    assert bad.exit_code == 2 and error_lines(bad.stderr) == ["error: min_agreement=1.5: give a fraction between 0 and 1 (e.g. 0.99)"]
    ref = {}

    def wrong(path, images, threads=None):  # every answer changed: refused, exit 1, with the figures
        logits = onnx_logits(Path(path).read_bytes(), images)
        ref["n"] = len(images)
        return -logits

    monkeypatch.setattr(bf16, "openvino_bf16_logits", wrong)
    refused = invoke(cli, args)
    assert refused.exit_code == 1 and "BF16 refused" in refused.stderr and f"on {ref['n']} validation images" in refused.stderr
    monkeypatch.setattr(bf16, "openvino_bf16_logits", lambda path, images, threads=None: onnx_logits(Path(path).read_bytes(), images))
    ok = invoke(cli, args)
    assert ok.exit_code == 0 and "agreement with FP32 100.0%" in ok.stdout and "met" in ok.stdout

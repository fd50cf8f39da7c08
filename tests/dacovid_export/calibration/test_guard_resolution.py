"""A guard figure says how much it can show: one differing image of n moves agreement by 1/n (issue 29)."""

from __future__ import annotations

import pytest

from dacovid_export.calibration.bf16 import Bf16GuardReport
from dacovid_export.calibration.fp16_guard import Fp16GuardReport
from dacovid_export.calibration.guard_report import (
    images_to_resolve,
    resolution_text,
    resolution_warning,
)
from dacovid_export.data.agreement import Agreement


def _agreement(images: int) -> Agreement:
    return Agreement(images=images, agreement=1.0, median_abs_dlogit=0.01, max_abs_dlogit=0.02, mean_abs_dlogit=0.01)


@pytest.mark.parametrize(("target", "images"), [(0.99, 100), (0.995, 200), (0.9, 10), (1.0, 1)])
def test_images_to_resolve_is_the_smallest_n_with_one_image_within_the_margin(target: float, images: int) -> None:
    assert images_to_resolve(target) == images
    assert resolution_warning("INT8", images, target) == []
    if images > 1 and target < 1.0:
        assert resolution_warning("INT8", images - 1, target) != []


def test_warning_names_the_step_the_margin_and_the_images_needed() -> None:
    (line,) = resolution_warning("FP16", 6, 0.995)
    assert line.startswith("FP16 guard: WARNING: 6 validation images cannot resolve the target 99.50%")
    assert "16.7%" in line and "0.5% between the target and 100%" in line and "200 or more" in line
    # 1/199 and the margin would both print as 0.50% with two decimals
    (close,) = resolution_warning("FP16", 199, 0.995)
    assert "0.503%" in close


def test_resolution_text() -> None:
    assert resolution_text(6) == "resolution 16.7% = 1 of 6 images"
    assert resolution_text(200) == "resolution 0.5% = 1 of 200 images"


def _fp16_report(images: int) -> Fp16GuardReport:
    a = _agreement(images)
    return Fp16GuardReport(
        target=0.995, validation={"source": "held-out part"}, reference="ONNX Runtime CPU, FP32 model", before=a,
        after=a, convs=58, seconds=1.0, passed=True, min_fp16_conv_share=0.9, kept_fp32=(), fp16_convs=58, steps=(),
    )


def test_fp16_guard_lines_show_the_resolution_next_to_the_target_and_warn() -> None:
    lines = _fp16_report(6).lines()
    assert "(target 99.50%; resolution 16.7% = 1 of 6 images)" in lines[0]
    assert sum("WARNING" in line for line in lines) == 1
    resolved = _fp16_report(200).lines()
    assert "(target 99.50%; resolution 0.5% = 1 of 200 images)" in resolved[0]
    assert not any("WARNING" in line for line in resolved)


def test_bf16_guard_lines_show_the_resolution_and_warn() -> None:
    report = Bf16GuardReport(
        model="model.bf16.onnx", agreement=_agreement(6), min_agreement=0.99, passed=True, validation={}, seconds=1.0
    )
    lines = report.lines()
    assert "resolution 16.7% = 1 of 6 images" in lines[0]
    assert any(line.startswith("BF16 guard: WARNING: 6 validation images") for line in lines)

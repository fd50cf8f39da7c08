"""Parameters and GFLOPs: docs/design.md's figures, the 2-FLOPs-per-MAC convention, the model-option table."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.bench.cost import (
    MODEL_OPTION_GRID,
    artifact_cost,
    cost_table,
    count_gflops,
    model_cost,
)
from dacovid_export.core.errors import UserInputError


def test_paper_default_at_224_matches_the_design_brief() -> None:
    cost = model_cost({}, 224)
    assert cost.parameters == 42_714_309  # 42.7 M
    assert cost.gflops == pytest.approx(69.8, abs=0.05)
    assert cost.latency_ms is None


def test_a_multiply_add_counts_two_flops() -> None:
    import torch
    from torch import nn

    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    # 8 output channels x 3 input channels x 9 taps x 32*32 output positions, batch 1
    macs = 8 * 3 * 9 * 32 * 32
    with torch.device("meta"):
        meta_conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    assert count_gflops(conv, 32) * 1e9 == pytest.approx(2 * macs)
    assert count_gflops(meta_conv, 32) * 1e9 == pytest.approx(2 * macs)


def test_cheaper_options_cost_less() -> None:
    base = model_cost({}, 224)
    os16 = model_cost({"output_stride": 16}, 224)
    k1 = model_cost({"reduction_kernel_size": 1}, 224)
    assert os16.parameters == base.parameters and os16.gflops < base.gflops / 3
    assert k1.parameters < base.parameters and k1.gflops < base.gflops


def test_model_cost_rejects_bad_options() -> None:
    with pytest.raises(UserInputError, match="output_stride"):
        model_cost({"output_stride": 4}, 224)
    with pytest.raises(UserInputError, match="image_size"):
        model_cost({}, 16)


def test_cost_table_rows_and_markdown(tiny_image_size: int) -> None:
    table = cost_table(tiny_image_size, measure_latency=False, progress=False)
    assert [(r.model_config["output_stride"], r.model_config["reduction_kernel_size"]) for r in table.rows] == list(
        MODEL_OPTION_GRID
    )
    assert all(r.latency_ms is None and r.image_size == tiny_image_size for r in table.rows)
    text = table.format_markdown()
    assert "1 multiply-add = 2 FLOPs" in text
    assert len([line for line in text.splitlines() if line.startswith("| 8 |") or line.startswith("| 16 |") or line.startswith("| 32 |")]) == 6
    data = table.to_dict()
    assert data["rows"][0]["gflops"] > data["rows"][-1]["gflops"]


def test_cost_table_measures_latency(tiny_image_size: int) -> None:
    table = cost_table(
        tiny_image_size, options=((32, 1),), reduction_channels=16, iterations=1, warmup=0, progress=False
    )
    (row,) = table.rows
    assert row.latency_ms is not None and row.latency_ms > 0 and row.latency_iterations == 1
    assert table.latency_threads is not None


def test_artifact_cost_reads_the_model_options(
    tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path, tiny_image_size: int, tiny_model_kwargs: dict
) -> None:
    cost = artifact_cost(tiny_checkpoint).cost
    assert cost is not None
    expected = model_cost({k: v for k, v in tiny_model_kwargs.items() if k != "dropout"}, tiny_image_size)
    assert (cost.parameters, cost.gflops) == (expected.parameters, pytest.approx(expected.gflops))
    toy = artifact_cost(make_toy_onnx(tmp_path / "toy.onnx"))
    assert toy.cost is None and "model options" in toy.reason

"""One CPU benchmark of the tiny checkpoint and a toy ONNX model, shared by the bench tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.bench.config import BenchConfig
from dacovid_export.bench.run import run_benchmark

FAST = dict(iterations=2, warmup=1, progress=False)


@pytest.fixture(scope="package")
def toy_onnx(make_toy_onnx, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_onnx(tmp_path_factory.mktemp("bench_toy") / "toy.onnx")


@pytest.fixture(scope="package")
def cpu_result(tiny_checkpoint: Path, toy_onnx: Path):
    return run_benchmark([tiny_checkpoint, toy_onnx], BenchConfig(device="cpu", batch_sizes=(1, 2), **FAST))

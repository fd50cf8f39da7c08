"""Bench records and statistics: percentiles and latency statistics on known samples, series labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dacovid_export.bench.records import BenchRecord, latency_stats, percentile


def test_percentile_is_nearest_rank_on_known_samples() -> None:
    hundred = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(hundred, 90) == 90.0
    assert percentile(hundred, 95) == 95.0
    assert percentile(hundred, 99) == 99.0
    assert percentile(hundred, 100) == 100.0
    assert percentile(hundred, 0) == 1.0
    ten = [float(v) for v in range(10, 110, 10)]  # 10..100
    assert percentile(ten, 90) == 90.0  # rank ceil(9.0) = 9
    assert percentile(ten, 95) == 100.0  # rank ceil(9.5) = 10
    assert percentile(ten, 50) == 50.0
    twenty = [float(v) for v in range(1, 21)]
    # 0.95 * 20 is 19 exactly; a float product (18.999...) would give 19, 19.000...1 would give 20
    assert percentile(twenty, 95) == 19.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_agrees_with_numpy_inverted_cdf() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 10, 19, 20, 33, 100, 101):
        samples = np.sort(rng.gamma(2.0, 3.0, size=n))
        for p in (50, 90, 95, 99, 99.9):
            assert percentile(samples, p) == pytest.approx(float(np.percentile(samples, p, method="inverted_cdf")))


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_stats_on_known_samples() -> None:
    samples = [4.0, 1.0, 3.0, 2.0, 10.0, 6.0, 5.0, 8.0, 7.0, 9.0]  # 1..10, shuffled
    stats = latency_stats(samples)
    assert stats["mean_ms"] == pytest.approx(5.5)
    assert stats["p50_ms"] == pytest.approx(5.5)  # median of an even count: mean of the two middle samples
    assert stats["p90_ms"] == 9.0
    assert stats["p95_ms"] == 10.0
    assert stats["p99_ms"] == 10.0
    assert stats["min_ms"] == 1.0 and stats["max_ms"] == 10.0
    assert stats["std_ms"] == pytest.approx(float(np.std(np.arange(1, 11))))
    assert latency_stats([3.0, 1.0, 2.0])["p50_ms"] == 2.0


def test_record_series_label() -> None:
    base = BenchRecord(
        artifact="m.onnx", artifact_path="m.onnx", backend="onnxruntime", precision="fp16", variant="default",
        device="cpu", timing="end_to_end", batch=1, image_size=64, mean_ms=1, p50_ms=1, p90_ms=1, p95_ms=1,
        p99_ms=1, min_ms=1, max_ms=1, std_ms=0, throughput_ips=1000, iterations=1, warmup=0, clock="perf_counter",
        threads=2,
    )
    assert base.series == "m.onnx onnxruntime/fp16"
    gpu = dataclasses.replace(base, device="cuda", timing="compute", backend="torch", variant="autocast")
    assert gpu.series == "m.onnx torch/fp16 autocast [compute]"

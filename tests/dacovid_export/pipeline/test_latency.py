"""Headline ratios on known records: which comparisons appear, their ratios, targets and the fastest CPU INT8."""

from __future__ import annotations

from dacovid_export.bench.config import BenchConfig
from dacovid_export.bench.records import BenchRecord, BenchResult
from dacovid_export.pipeline.latency import ORT_VS_TORCH_TARGET, headline_ratios


def _record(backend: str, precision: str, p50: float, variant: str = "default") -> BenchRecord:
    return BenchRecord(
        artifact="m", artifact_path="m", backend=backend, precision=precision, variant=variant, device="cpu",
        timing="end_to_end", batch=1, image_size=64, mean_ms=p50, p50_ms=p50, p90_ms=p50, p95_ms=p50, p99_ms=p50,
        min_ms=p50, max_ms=p50, std_ms=0.0, throughput_ips=1000 / p50, iterations=2, warmup=1, clock="perf_counter",
        threads=2,
    )


def test_headline_ratios_targets_and_fastest_cpu_int8() -> None:
    records = (
        _record("torch", "fp32", 10.0, variant="eager"),
        _record("onnxruntime", "fp32", 6.0),
        _record("onnxruntime", "int8", 9.0),
        _record("openvino", "int8", 1.5),
    )
    result = BenchResult(records=records, environment={}, config=BenchConfig(device="cpu"))
    by_label = {h.comparison: h for h in headline_ratios(result)}
    ort = by_label["ONNX Runtime FP32 vs PyTorch eager FP32"]
    assert (ort.ratio, ort.target, ort.meets_target) == (0.6, ORT_VS_TORCH_TARGET, True)
    best = by_label["CPU INT8 (fastest: openvino) vs ONNX Runtime FP32"]
    assert (best.p50_ms, best.baseline_p50_ms, best.ratio, best.target, best.meets_target) == (1.5, 6.0, 0.25, 0.35, True)
    assert by_label["ONNX Runtime INT8 vs ONNX Runtime FP32"].meets_target is None
    assert not any(label.startswith("TensorRT") or "FP16" in label for label in by_label)
    assert ort.to_dict()["comparison"] == ort.comparison
    assert ort.text() == (
        "ONNX Runtime FP32 vs PyTorch eager FP32, cpu batch 1 [end_to_end]: 6.0 / 10.0 ms = 0.60 (target <= 0.70: met)"
    )


def test_fp32_baseline_is_openvino_where_auto_ran_fp32_there() -> None:
    def rec(backend: str, precision: str, p50: float, variant: str = "default") -> BenchRecord:
        return BenchRecord(
            artifact="m", artifact_path="m", backend=backend, precision=precision, variant=variant, device="cpu",
            timing="end_to_end", batch=1, image_size=224, mean_ms=p50, p50_ms=p50, p90_ms=p50, p95_ms=p50,
            p99_ms=p50, min_ms=p50, max_ms=p50, std_ms=0.0, throughput_ips=1000 / p50, iterations=1, warmup=0,
            clock="perf_counter", threads=2,
        )

    records = (rec("torch", "fp32", 600.0, "eager"), rec("openvino", "fp32", 240.0), rec("openvino", "int8", 90.0))
    heads = {h.comparison: h for h in headline_ratios(BenchResult(records, {}, BenchConfig(progress=False)))}
    assert heads["OpenVINO FP32 vs PyTorch eager FP32"].ratio == 0.4
    assert heads["OpenVINO INT8 vs OpenVINO FP32"].ratio == 0.375
    assert not any("ONNX Runtime FP32" in c for c in heads)


def test_bf16_headline_against_the_default_fp32_path() -> None:
    from dacovid_export.pipeline.latency import BF16_VS_FP32_TARGET

    records = (_record("openvino", "fp32", 240.0), _record("openvino", "bf16", 40.0))
    heads = {h.comparison: h for h in headline_ratios(BenchResult(records, {}, BenchConfig(progress=False)))}
    bf16 = heads["OpenVINO BF16 vs OpenVINO FP32"]
    assert (bf16.ratio, bf16.target, bf16.meets_target) == (0.167, BF16_VS_FP32_TARGET, False)

"""dacovid-bench: statistics on known samples, records, output files and up-front errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.artifacts.info import read_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.bench.run import (
    DEFAULT_ITERATIONS,
    RECORD_KEYS,
    BenchConfig,
    BenchRecord,
    latency_stats,
    parse_int_list,
    percentile,
    run_benchmark,
)
from dacovid_export.core.errors import MissingDependencyError, UserInputError
from tests.helpers.cli import assert_one_line_error, invoke

SPEC_KEYS = ("artifact", "backend", "precision", "batch", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "throughput_ips")
FAST = dict(iterations=2, warmup=1, progress=False)


# ------------------------------------------------------------------ statistics


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


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"backend": "nosuch"}, "nosuch"),
        ({"device": "tpu"}, "tpu"),
        ({"batch_sizes": ()}, "empty"),
        ({"batch_sizes": (1, 0)}, "batch size=0"),
        ({"batch_sizes": (2, 2)}, "once"),
        ({"iterations": 5, "duration_s": 1.0}, "not both"),
        ({"iterations": 0}, "iterations=0"),
        ({"duration_s": -1.0}, "duration_s=-1.0"),
        ({"warmup": -1}, "warmup=-1"),
        ({"image_size": 16}, "image_size=16"),
        ({"threads": 0}, "threads=0"),
        ({"autocast": ("fp8",)}, "fp8"),
        ({"backend": "onnxruntime", "channels_last": True}, "PyTorch options"),
    ],
)
def test_bench_config_rejects_bad_values(kwargs: dict, fragment: str) -> None:
    with pytest.raises(UserInputError, match=fragment):
        BenchConfig(**kwargs)


def test_bench_config_iterations_default_and_duration() -> None:
    assert BenchConfig().effective_iterations == DEFAULT_ITERATIONS
    assert BenchConfig(iterations=3).effective_iterations == 3
    assert BenchConfig(duration_s=0.5).effective_iterations is None


def test_parse_int_list() -> None:
    assert parse_int_list("1, 8,32") == (1, 8, 32)
    with pytest.raises(UserInputError, match="1,x"):
        parse_int_list("1,x")
    with pytest.raises(UserInputError, match=">= 1"):
        parse_int_list("0")


# ------------------------------------------------------------------ records


@pytest.fixture(scope="module")
def toy_onnx(make_toy_onnx, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_onnx(tmp_path_factory.mktemp("bench_toy") / "toy.onnx")


@pytest.fixture(scope="module")
def cpu_result(tiny_checkpoint: Path, toy_onnx: Path):
    return run_benchmark([tiny_checkpoint, toy_onnx], BenchConfig(device="cpu", batch_sizes=(1, 2), **FAST))


def test_records_cover_every_artifact_and_batch(cpu_result, tiny_checkpoint: Path, toy_onnx: Path) -> None:
    records = cpu_result.records
    assert [(r.artifact, r.backend, r.batch) for r in records] == [
        (tiny_checkpoint.name, "torch", 1),
        (tiny_checkpoint.name, "torch", 2),
        (toy_onnx.name, "onnxruntime", 1),
        (toy_onnx.name, "onnxruntime", 2),
    ]
    for r in records:
        d = r.to_dict()
        assert set(SPEC_KEYS) <= set(d)
        assert tuple(d) == RECORD_KEYS
        # a CPU run has one series, labelled end_to_end and timed with the host's monotonic clock
        assert (r.device, r.timing, r.clock) == ("cpu", "end_to_end", "perf_counter")
        assert r.precision == "fp32" and r.iterations == 2 and r.warmup == 1 and r.image_size == 64
        assert r.min_ms <= r.p50_ms <= r.p90_ms <= r.p95_ms <= r.p99_ms <= r.max_ms
        assert r.min_ms <= r.mean_ms <= r.max_ms and r.min_ms > 0
        assert r.throughput_ips == pytest.approx(r.batch * 1000.0 / r.mean_ms)
        assert isinstance(r.threads, int) and r.threads >= 1
    assert records[0].variant == "eager"


def test_result_json_has_records_and_environment(cpu_result) -> None:
    data = cpu_result.to_dict()
    assert len(data["records"]) == 4
    env = data["environment"]
    assert env["cpu"]["logical_cores"] >= 1
    assert env["versions"]["tensorrt"]  # a version or "not installed"
    assert {"torch_intra_op", "ort_intra_op", "OMP_NUM_THREADS"} <= set(env["threads"])
    json.dumps(data)  # JSON-ready


def test_markdown_table_environment_and_baseline_ratio(cpu_result) -> None:
    text = cpu_result.format_markdown()
    assert "| artifact | backend | precision |" in text
    assert "p50 vs torch eager fp32" in text
    assert "## Environment" in text and "ONNX Runtime intra-op" in text
    assert "nearest-rank" in text
    # torch eager is its own baseline: ratio 1.00 in the last column
    torch_rows = [line for line in text.splitlines() if line.startswith("| tiny.pt")]
    assert len(torch_rows) == 2 and all(row.rstrip(" |").endswith("1.00") for row in torch_rows)


def test_save_writes_csv_json_and_png(cpu_result, tmp_path: Path) -> None:
    written = cpu_result.save(json=tmp_path / "b.json", csv=tmp_path / "b.csv", plot=tmp_path / "b.png")
    assert [p.name for p in written] == ["b.json", "b.csv", "b.png"]
    with open(tmp_path / "b.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORD_KEYS
    assert [int(r["batch"]) for r in rows] == [1, 2, 1, 2]
    assert float(rows[2]["p50_ms"]) == pytest.approx(cpu_result.records[2].p50_ms)
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["records"][3]["p99_ms"] == pytest.approx(cpu_result.records[3].p99_ms)
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "b.json", "b.png"]  # no temporary files left


def test_plot_with_one_batch_size(cpu_result, tmp_path: Path) -> None:
    from dacovid_export.bench.report import plot_latency

    one = [r for r in cpu_result.records if r.batch == 1]
    assert plot_latency(one, tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"


def test_duration_mode_runs_at_least_one_iteration(toy_onnx: Path) -> None:
    result = run_benchmark([toy_onnx], BenchConfig(device="cpu", duration_s=0.05, warmup=0, progress=False))
    (record,) = result.records
    assert record.iterations >= 1


def test_threads_option_reaches_onnxruntime(toy_onnx: Path) -> None:
    result = run_benchmark([toy_onnx], BenchConfig(device="cpu", threads=1, **FAST))
    assert result.records[0].threads == 1
    assert result.environment["threads"]["ort_intra_op"] == 1


# ------------------------------------------------------------------ errors before timing


def test_batch_larger_than_static_onnx_fails_before_timing(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    import dacovid_export.bench.run as benchmark

    static = make_toy_onnx(tmp_path / "static2.onnx", batch=2)
    assert read_artifact_info(static).max_batch == 2
    timed = []
    monkeypatch.setattr(benchmark, "_time_series", lambda *a, **k: timed.append(a) or {})
    with pytest.raises(UserInputError, match="batch size 4 is outside the range 2..2"):
        run_benchmark([static], BenchConfig(device="cpu", batch_sizes=(2, 4), **FAST))
    assert timed == []


def test_image_size_must_match_the_artifact(toy_onnx: Path) -> None:
    with pytest.raises(UserInputError, match="made for 64x64"):
        run_benchmark([toy_onnx], BenchConfig(image_size=224, **FAST))


def test_torch_options_need_a_checkpoint(toy_onnx: Path) -> None:
    with pytest.raises(UserInputError, match="no checkpoint"):
        run_benchmark([toy_onnx], BenchConfig(channels_last=True, **FAST))


def test_unknown_artifact_type(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="unknown artifact type"):
        run_benchmark([tmp_path / "model.bin"], BenchConfig(**FAST))


def _tensorrt_importable() -> bool:
    """TensorRT or TensorRT-RTX is installed: the engine backend has a library to load engines with."""
    from dacovid_export.trt.library import installed_runtimes

    return bool(installed_runtimes())


@pytest.mark.skipif(_tensorrt_importable(), reason="TensorRT or TensorRT-RTX is installed here")
def test_tensorrt_backend_missing_is_a_dependency_error(toy_onnx: Path) -> None:
    with pytest.raises(MissingDependencyError, match="tensorrt"):
        run_benchmark([toy_onnx], BenchConfig(backend="tensorrt", **FAST))


# ------------------------------------------------------------------ GPU timing logic without a GPU


class _StreamlessCudaStandIn(Backend):
    """Claims a CUDA device but exposes no stream: the bench must fall back to host clocks, two series."""

    name = "onnxruntime"

    def __init__(self, info) -> None:
        super().__init__(info, "cuda")
        self.calls: list[str] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 3), dtype=np.float32)

    def stage(self, batch: np.ndarray) -> None:
        self.calls.append("stage")
        super().stage(batch)

    def execute_staged(self) -> None:
        self.calls.append("execute")
        super().execute_staged()


def test_cuda_backend_gets_compute_and_end_to_end_series(toy_onnx: Path, monkeypatch) -> None:
    import dacovid_export.bench.run as benchmark

    stand_in = _StreamlessCudaStandIn(read_artifact_info(toy_onnx))
    monkeypatch.setattr(benchmark, "_open", lambda run, config: stand_in)
    result = run_benchmark([toy_onnx], BenchConfig(iterations=3, warmup=1, progress=False))
    assert [(r.timing, r.clock, r.device) for r in result.records] == [
        ("compute", "perf_counter", "cuda"),
        ("end_to_end", "perf_counter", "cuda"),
    ]
    # compute series: one stage, then execute only; end-to-end: stage + execute every time
    warmup, compute, end_to_end = stand_in.calls[:2], stand_in.calls[2:6], stand_in.calls[6:]
    assert warmup == ["stage", "execute"]
    assert compute == ["stage", "execute", "execute", "execute"]
    assert end_to_end == ["stage", "execute"] * 3
    assert all(r.threads is None for r in result.records)


@pytest.mark.gpu
def test_cuda_event_timing_on_a_gpu(tiny_checkpoint: Path, toy_onnx: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    result = run_benchmark([tiny_checkpoint, toy_onnx], BenchConfig(device="cuda", batch_sizes=(1, 2), **FAST))
    assert {(r.artifact, r.timing, r.batch) for r in result.records} == {
        (a.name, t, b) for a in (tiny_checkpoint, toy_onnx) for t in ("compute", "end_to_end") for b in (1, 2)
    }
    assert all(r.clock == "cuda_event" and r.min_ms > 0 for r in result.records)
    assert result.environment["gpu"]["name"]


# ------------------------------------------------------------------ CLI


def test_cli_unknown_backend_is_one_line_exit_2(toy_onnx: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = invoke(bench, [str(toy_onnx), "--backend", "nosuch"])
    assert_one_line_error(result, "nosuch", stream="output")


@pytest.mark.skipif(_tensorrt_importable(), reason="TensorRT or TensorRT-RTX is installed here")
def test_cli_tensorrt_not_installed_is_one_line_exit_2(toy_onnx: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = invoke(bench, [str(toy_onnx), "--backend", "tensorrt"])
    assert_one_line_error(result, "pip install", stream="output")


def test_cli_batch_over_engine_limit_is_one_line_exit_2(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.cli.main import cli

    static = make_toy_onnx(tmp_path / "static1.onnx", batch=1)
    result = invoke(cli, ["bench", str(static), "--batch", "1,8", "--no-progress"])
    assert_one_line_error(result, "batch size 8", stream="output")


def test_cli_iterations_and_duration_conflict(toy_onnx: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = invoke(bench, [str(toy_onnx), "--iterations", "3", "--duration", "1"])
    assert_one_line_error(result, "not both", stream="output")


def test_cli_writes_table_and_files(toy_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    args = [str(toy_onnx), "--batch", "1,3", "--iterations", "2", "--warmup", "0", "--device", "cpu", "--no-progress",
            "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv"), "--plot", str(tmp_path / "o.png")]
    result = invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "| toy.onnx | onnxruntime | fp32 |" in result.output
    records = json.loads((tmp_path / "o.json").read_text())["records"]
    assert [r["batch"] for r in records] == [1, 3]
    assert all(math.isfinite(r["p99_ms"]) for r in records)
    assert (tmp_path / "o.csv").is_file() and (tmp_path / "o.png").is_file()


def test_cli_plot_must_be_png(toy_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.cli.bench_cmd import bench

    result = invoke(bench, [str(toy_onnx), "--plot", str(tmp_path / "o.svg")])
    assert_one_line_error(result, ".png", stream="output")


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

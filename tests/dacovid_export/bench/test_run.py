"""run_benchmark: records of every artifact and batch, errors before timing, the GPU series logic without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.bench.config import BenchConfig
from dacovid_export.bench.records import RECORD_KEYS
from dacovid_export.bench.run import run_benchmark
from dacovid_export.core.errors import MissingDependencyError, UserInputError
from tests.helpers.runtimes import tensorrt_importable

SPEC_KEYS = ("artifact", "backend", "precision", "batch", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "throughput_ips")
FAST = dict(iterations=2, warmup=1, progress=False)


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


def test_cpu_rows_have_gflops_and_a_gemm_fraction_from_the_same_run(cpu_result, tiny_checkpoint: Path) -> None:
    from dacovid_export.bench.cost import artifact_cost

    gemms = cpu_result.gemm_gflops
    # one GEMM before the first CPU series and one after each series (here: torch, onnxruntime)
    assert len(gemms) == 3 and all(g > 0 for g in gemms)
    gflops = artifact_cost(tiny_checkpoint).cost.gflops
    torch_rows = [r for r in cpu_result.records if r.backend == "torch"]
    for r in torch_rows:
        assert r.gflops_per_s == pytest.approx(gflops * r.batch / (r.p50_ms / 1000))
        assert r.gemm_fraction == pytest.approx(r.gflops_per_s / ((gemms[0] + gemms[1]) / 2))
    # the toy ONNX model says no model options: no GFLOPs to state, and no invented figure
    assert all(r.gflops_per_s is None and r.gemm_fraction is None for r in cpu_result.records if r.backend != "torch")
    assert cpu_result.to_dict()["gemm_fp32_gflops"] == list(gemms)


def test_result_json_has_records_and_environment(cpu_result) -> None:
    data = cpu_result.to_dict()
    assert len(data["records"]) == 4
    env = data["environment"]
    assert env["cpu"]["logical_cores"] >= 1
    assert env["versions"]["tensorrt"]  # a version or "not installed"
    assert {"torch_intra_op", "ort_intra_op", "OMP_NUM_THREADS"} <= set(env["threads"])
    json.dumps(data)  # JSON-ready


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
    monkeypatch.setattr(benchmark, "time_series", lambda *a, **k: timed.append(a) or {})
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


@pytest.mark.skipif(tensorrt_importable(), reason="TensorRT or TensorRT-RTX is installed here")
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
    monkeypatch.setattr(benchmark, "open_run", lambda run, config: stand_in)
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


def test_fp32_onnx_on_the_cpu_is_timed_on_autos_choice(toy_onnx: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("DACOVID_CPU_RUNTIME", "openvino")  # auto's choice, pinned: the bench must follow it
    result = run_benchmark([toy_onnx], BenchConfig(device="cpu", threads=1, **FAST))
    assert [(r.backend, r.precision, r.threads) for r in result.records] == [("openvino", "fp32", 1)]
    both = run_benchmark([toy_onnx], BenchConfig(device="cpu", openvino_fp32=True, **FAST))
    assert [r.backend for r in both.records] == ["openvino", "onnxruntime"]  # the choice, then the other
    monkeypatch.delenv("DACOVID_CPU_RUNTIME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(toy_onnx.parent / "xdg"))
    measured = run_benchmark([toy_onnx], BenchConfig(device="cpu", **FAST))
    ((name, why),) = measured.cpu_choices
    assert name == toy_onnx.name and "backend auto:" in why and why in capsys.readouterr().err
    assert measured.records[0].backend == ("openvino" if "using OpenVINO" in why else "onnxruntime")

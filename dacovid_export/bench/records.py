"""What a benchmark measured: one :class:`BenchRecord` per series, the :class:`BenchResult`, and their statistics.

Statistics (those of trtexec, so the numbers compare with it): mean, standard
deviation (population), min, max; ``p50_ms`` is the median (mean of the two
middle samples for an even count, trtexec's ``median``);
``p90_ms``/``p95_ms``/``p99_ms`` are nearest-rank percentiles, the sample of
1-based rank ``ceil(p/100 * n)`` in ascending order, which is trtexec's
``percentile(p%)`` and numpy's ``method="inverted_cdf"``. With few samples the
high percentiles equal the maximum. Throughput in images per second is
``batch * 1000 / mean_ms``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dacovid_export.backends.triton_endpoint import ModelStatistics
from dacovid_export.bench.config import BenchConfig

if TYPE_CHECKING:
    from dacovid_export.bench.cost import ArtifactCost, CostTable

__all__ = [
    "RECORD_KEYS",
    "Timing",
    "BenchRecord",
    "BenchResult",
    "ServedLevel",
    "percentile",
    "latency_stats",
]

Timing = Literal["compute", "end_to_end"]

# column order of the CSV and of each JSON record
RECORD_KEYS = (
    "artifact",
    "backend",
    "precision",
    "variant",
    "device",
    "timing",
    "batch",
    "image_size",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "min_ms",
    "max_ms",
    "std_ms",
    "throughput_ips",
    "iterations",
    "warmup",
    "clock",
    "threads",
    "artifact_path",
    "gflops_per_s",
    "gemm_fraction",
)



@dataclasses.dataclass(frozen=True)
class BenchRecord:
    """Latency statistics of one artifact on one backend, precision, variant, batch size and timing."""

    artifact: str  # file name, for tables and plots
    artifact_path: str
    backend: str
    precision: str
    variant: str  # "eager", "channels_last+cuda_graphs", ... for PyTorch; "default" elsewhere
    device: str
    timing: Timing
    batch: int
    image_size: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput_ips: float
    iterations: int
    warmup: int
    clock: str  # "cuda_event" | "perf_counter"
    threads: int | None
    # CPU rows: the model's GFLOPs x batch / p50, and that rate over the FP32 GEMM measured next to the
    # series in the same run (dacovid_export.bench.gemm); None on GPUs, served rows, or without a model cost
    gflops_per_s: float | None = None
    gemm_fraction: float | None = None

    @property
    def series(self) -> str:
        """Label of the line this record belongs to in tables and plots."""
        variant = "" if self.variant == "default" else f" {self.variant}"
        timing = "" if self.device == "cpu" else f" [{self.timing}]"
        return f"{self.artifact} {self.backend}/{self.precision}{variant}{timing}"

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {key: values[key] for key in RECORD_KEYS}


@dataclasses.dataclass(frozen=True)
class ServedLevel:
    """One concurrency level against one endpoint: what the clients saw and what Triton counted."""

    url: str
    model: str
    concurrency: int
    requests: int
    wall_s: float
    images_per_s: float
    client_p50_ms: float
    client_mean_ms: float
    server: Mapping[str, ModelStatistics]  # model -> this level's counters

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["server"] = {name: stats.to_dict() for name, stats in self.server.items()}
        return out

    def cost_lines(self) -> list[str]:
        """Where a request's time went, per model, in milliseconds (means over this level's requests)."""
        lines = []
        for name, stats in self.server.items():
            ms = stats.per_request_ms()
            if stats.success_count == 0:
                continue
            batch = stats.inference_count / stats.execution_count if stats.execution_count else float("nan")
            lines.append(
                f"{name}: queue {ms['queue']:.2f}, compute input {ms['compute_input']:.2f}, infer "
                f"{ms['compute_infer']:.2f}, output {ms['compute_output']:.2f} ms per request; "
                f"{stats.execution_count} executions for {stats.inference_count} images (mean batch {batch:.2f})"
            )
        return lines


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """Everything one ``run_benchmark`` measured, plus the environment it ran in.

    Written as markdown, JSON, CSV and a plot by :mod:`dacovid_export.bench.report`.
    """

    records: tuple[BenchRecord, ...]
    environment: Mapping[str, Any]
    config: BenchConfig
    artifact_costs: tuple["ArtifactCost", ...] = ()
    cost_table: "CostTable | None" = None
    skipped: tuple[tuple[str, str], ...] = ()  # (artifact path, why it cannot run here)
    served: tuple[ServedLevel, ...] = ()  # live Triton endpoints: each level's client and server figures
    gemm_gflops: tuple[float, ...] = ()  # FP32 GEMM rates measured between the CPU series, in order
    cpu_choices: tuple[tuple[str, str], ...] = ()  # (artifact, the sentence auto printed) for FP32 ONNX on the CPU

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": [r.to_dict() for r in self.records],
            "skipped": [{"artifact": path, "reason": reason} for path, reason in self.skipped],
            "served": [level.to_dict() for level in self.served],
            "gemm_fp32_gflops": list(self.gemm_gflops),
            "cpu_choices": [{"artifact": a, "why": why} for a, why in self.cpu_choices],
            "environment": dict(self.environment),
            "config": self.config.to_dict(),
            "cost": None
            if not (self.artifact_costs or self.cost_table)
            else {
                "artifacts": [c.to_dict() for c in self.artifact_costs],
                "model_options": None if self.cost_table is None else self.cost_table.to_dict(),
            },
        }


def percentile(sorted_ms: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence: the sample of 1-based rank ``ceil(p/100 * n)``.

    trtexec's convention. Exact rational arithmetic, so 95% of 20 samples is
    rank 19, not rank 20 through a rounding error.
    """
    n = len(sorted_ms)
    if n == 0:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p!r} outside [0, 100]")
    rank = math.ceil(Fraction(str(p)) / 100 * n)
    return float(sorted_ms[min(max(rank, 1), n) - 1])


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """mean/std/min/max/p50 (median)/p90/p95/p99 of latency samples in ms (see the module docstring)."""
    if len(samples_ms) == 0:
        raise ValueError("no latency samples")
    arr = np.sort(np.asarray(samples_ms, dtype=np.float64))
    return {
        "mean_ms": float(arr.mean()),
        "std_ms": float(arr.std()),
        "min_ms": float(arr[0]),
        "max_ms": float(arr[-1]),
        "p50_ms": float(np.median(arr)),
        "p90_ms": percentile(arr, 90),
        "p95_ms": percentile(arr, 95),
        "p99_ms": percentile(arr, 99),
    }


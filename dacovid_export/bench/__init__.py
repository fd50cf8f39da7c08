"""Latency of checkpoints, ONNX models and engines (``dacovid-bench``).

One job per module: :mod:`.config` (what to time, validated), :mod:`.plan`
(which backends with which options), :mod:`.timing` (clocks, warm-up and timed
series), :mod:`.records` (records, results and their statistics), :mod:`.run`
(``run_benchmark``, the run over the planned models), :mod:`.report` (markdown,
JSON, CSV and the plot), :mod:`.cost` (parameters and GFLOPs) and
:mod:`.environment` (the machine the figures were measured on).
"""

from dacovid_export.bench.config import (
    AUTOCAST_CHOICES,
    BACKEND_CHOICES,
    DEFAULT_ITERATIONS,
    DEFAULT_WARMUP,
    DEVICE_CHOICES,
    BenchConfig,
    parse_int_list,
)
from dacovid_export.bench.records import (
    RECORD_KEYS,
    BenchRecord,
    BenchResult,
    latency_stats,
    percentile,
)
from dacovid_export.bench.report import format_markdown, save_bench_result
from dacovid_export.bench.run import bench_to_files, run_benchmark

__all__ = [
    "AUTOCAST_CHOICES",
    "BACKEND_CHOICES",
    "DEFAULT_ITERATIONS",
    "DEFAULT_WARMUP",
    "DEVICE_CHOICES",
    "RECORD_KEYS",
    "BenchConfig",
    "BenchRecord",
    "BenchResult",
    "bench_to_files",
    "format_markdown",
    "latency_stats",
    "parse_int_list",
    "percentile",
    "run_benchmark",
    "save_bench_result",
]

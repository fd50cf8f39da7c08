"""Latency of artifacts on their backends: the timing core behind ``dacovid-bench``.

Conventions (those of trtexec, so the numbers compare with it):

- Warm-up runs (the whole end-to-end path) precede every timed series.
- GPU work is timed with CUDA events recorded on the backend's stream, never
  with host clocks. Two series are reported as separate records:
  ``timing="compute"`` (``execute_staged`` only, input already on the device)
  and ``timing="end_to_end"`` (host-to-device copy + compute + device-to-host
  copy). Each iteration waits for its end event, so one sample is the latency
  of one batch, not a pipelined average.
- CPU work is timed with ``time.perf_counter_ns`` (monotonic). On a CPU there is
  no copy to separate, compute equals end-to-end, and one series is recorded,
  labelled ``timing="end_to_end"``.
- Statistics: mean, standard deviation (population), min, max; ``p50_ms`` is the
  median (mean of the two middle samples for an even count, trtexec's
  ``median``); ``p90_ms``/``p95_ms``/``p99_ms`` are nearest-rank percentiles,
  the sample of 1-based rank ``ceil(p/100 * n)`` in ascending order, which is
  trtexec's ``percentile(p%)`` and numpy's ``method="inverted_cdf"``. With few
  samples the high percentiles equal the maximum.
- Throughput in images per second is ``batch * 1000 / mean_ms``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo, read_artifact_info
from dacovid_export.backends.base import Backend, check_batch
from dacovid_export.bench.environment import physical_cores
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_batch_size, check_image_size

if TYPE_CHECKING:
    from dacovid_export.bench.cost import ArtifactCost, CostTable

__all__ = [
    "BACKEND_CHOICES",
    "DEVICE_CHOICES",
    "AUTOCAST_CHOICES",
    "DEFAULT_ITERATIONS",
    "DEFAULT_WARMUP",
    "RECORD_KEYS",
    "Timing",
    "BenchConfig",
    "BenchRecord",
    "BenchResult",
    "percentile",
    "latency_stats",
    "parse_int_list",
    "run_benchmark",
]

BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
AUTOCAST_CHOICES = ("fp16", "bf16")
DEFAULT_ITERATIONS = 20
DEFAULT_WARMUP = 3

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
)


def _positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserInputError(f"{name}={value!r}: must be an integer >= {minimum}")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to time and how. Validated on construction.

    ``iterations`` and ``duration_s`` are exclusive; with neither, each series
    runs :data:`DEFAULT_ITERATIONS` iterations. ``image_size=None`` uses each
    artifact's own size; a value is checked against every artifact.
    ``threads`` sets torch's intra-op threads and ONNX Runtime's intra-op
    threads (``None``: torch's current setting, ORT's backend default).
    ``autocast``, ``channels_last``, ``cuda_graphs`` and ``compile`` concern
    PyTorch checkpoints: the eager FP32 baseline always runs, then FP32 with
    the chosen options, then each autocast precision with them.
    ``cost``: also compute the parameter/GFLOP table (see :mod:`dacovid_export.bench.cost`).
    ``openvino_fp32``/``openvino_bf16``: also time FP32 ONNX models with OpenVINO in FP32
    (``INFERENCE_PRECISION_HINT=f32``) / in BF16, as their own ``bf16`` rows (CPUs with
    BF16 support only; an error elsewhere).
    On the CPU with ``backend="auto"``, INT8 ONNX models are timed with ONNX Runtime and
    with OpenVINO (FP32 inference precision set explicitly around the INT8 kernels).
    """

    backend: str = "auto"
    device: str = "auto"
    batch_sizes: tuple[int, ...] = (1,)
    image_size: int | None = None
    warmup: int = DEFAULT_WARMUP
    iterations: int | None = None
    duration_s: float | None = None
    threads: int | None = None
    autocast: tuple[str, ...] = ()
    channels_last: bool = False
    cuda_graphs: bool = False
    compile: bool = False
    cost: bool = False
    cost_latency: bool = True
    openvino_fp32: bool = False
    openvino_bf16: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise UserInputError(f"backend={self.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
        if self.device not in DEVICE_CHOICES:
            raise UserInputError(f"device={self.device!r}: choose one of {', '.join(DEVICE_CHOICES)}")
        batches = tuple(self.batch_sizes)
        if not batches:
            raise UserInputError("batch_sizes is empty: give at least one batch size, e.g. 1,8,32")
        for b in batches:
            check_batch_size(b, "batch size")
        if len(set(batches)) != len(batches):
            raise UserInputError(f"batch_sizes={list(batches)}: each batch size once, please")
        object.__setattr__(self, "batch_sizes", batches)
        if self.image_size is not None:
            check_image_size(self.image_size)
        _positive_int("warmup", self.warmup, minimum=0)
        if self.iterations is not None and self.duration_s is not None:
            raise UserInputError(
                f"iterations={self.iterations!r} and duration_s={self.duration_s!r}: give one of them, not both"
            )
        if self.iterations is not None:
            _positive_int("iterations", self.iterations)
        if self.duration_s is not None:
            if isinstance(self.duration_s, bool) or not isinstance(self.duration_s, (int, float)):
                raise UserInputError(f"duration_s={self.duration_s!r}: must be a number of seconds > 0")
            if not (math.isfinite(self.duration_s) and self.duration_s > 0):
                raise UserInputError(f"duration_s={self.duration_s!r}: must be a number of seconds > 0")
        if self.threads is not None:
            _positive_int("threads", self.threads)
        autocast = tuple(self.autocast)
        for p in autocast:
            if p not in AUTOCAST_CHOICES:
                raise UserInputError(f"autocast precision {p!r}: choose from {', '.join(AUTOCAST_CHOICES)}")
        if len(set(autocast)) != len(autocast):
            raise UserInputError(f"autocast={list(autocast)}: each precision once, please")
        object.__setattr__(self, "autocast", autocast)
        for name in ("openvino_fp32", "openvino_bf16"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise UserInputError(f"{name}={value!r}: need True or False")
            if value and (self.backend not in ("auto", "openvino") or self.device == "cuda"):
                raise UserInputError(
                    f"{name} adds OpenVINO CPU rows; backend={self.backend!r}, device={self.device!r} has none: "
                    "use backend auto or openvino on the CPU"
                )
        if self.backend not in ("auto", "torch") and self.torch_options_set:
            raise UserInputError(
                f"--autocast/--channels-last/--cuda-graphs/--compile are PyTorch options; backend={self.backend!r} ignores them"
            )

    @property
    def torch_options_set(self) -> bool:
        return bool(self.autocast or self.channels_last or self.cuda_graphs or self.compile)

    @property
    def effective_iterations(self) -> int | None:
        """Iterations per series, or ``None`` when the series runs for ``duration_s``."""
        if self.duration_s is not None:
            return None
        return self.iterations if self.iterations is not None else DEFAULT_ITERATIONS

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["batch_sizes"] = list(self.batch_sizes)
        out["autocast"] = list(self.autocast)
        out["effective_iterations"] = self.effective_iterations
        return out


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
class BenchResult:
    """Everything one ``run_benchmark`` measured, plus the environment it ran in."""

    records: tuple[BenchRecord, ...]
    environment: Mapping[str, Any]
    config: BenchConfig
    artifact_costs: tuple["ArtifactCost", ...] = ()
    cost_table: "CostTable | None" = None
    skipped: tuple[tuple[str, str], ...] = ()  # (artifact path, why it cannot run here)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": [r.to_dict() for r in self.records],
            "skipped": [{"artifact": path, "reason": reason} for path, reason in self.skipped],
            "environment": dict(self.environment),
            "config": self.config.to_dict(),
            "cost": None
            if not (self.artifact_costs or self.cost_table)
            else {
                "artifacts": [c.to_dict() for c in self.artifact_costs],
                "model_options": None if self.cost_table is None else self.cost_table.to_dict(),
            },
        }

    def format_markdown(self) -> str:
        from dacovid_export.bench.report import format_markdown

        return format_markdown(self)

    def save(
        self,
        *,
        json: str | os.PathLike[str] | None = None,
        csv: str | os.PathLike[str] | None = None,
        plot: str | os.PathLike[str] | None = None,
    ) -> list[Path]:
        """Write the requested files atomically; returns their paths."""
        from dacovid_export.bench import report as bench_report

        written = []
        if json is not None:
            written.append(bench_report.write_json(self, json))
        if csv is not None:
            written.append(bench_report.write_csv(self.records, csv))
        if plot is not None:
            written.append(bench_report.plot_latency(self.records, plot))
        return written


def parse_int_list(text: str, name: str = "batch sizes") -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; anything else raises :class:`UserInputError` quoting it."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise UserInputError(f"{name} {text!r}: give comma-separated integers, e.g. 1,8,32") from None
    if any(v < 1 for v in values):
        raise UserInputError(f"{name} {text!r}: every value must be >= 1")
    return values


# ---------------------------------------------------------------------------
# statistics


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
    """mean/std/min/max/p50 (median)/p90/p95/p99 of latency samples in ms (see module docstring)."""
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


# ---------------------------------------------------------------------------
# planning: which backends to open with which options


@dataclasses.dataclass(frozen=True)
class _Run:
    path: str
    info: ArtifactInfo
    backend: str
    options: Mapping[str, Any]
    precision: str | None  # None: the artifact's own
    variant: str


def _torch_runs(path: str, info: ArtifactInfo, config: BenchConfig) -> list[_Run]:
    flags = [name for name in ("channels_last", "cuda_graphs", "compile") if getattr(config, name)]
    flag_options = {name: True for name in flags}
    label = "+".join(flags)
    runs = [_Run(path, info, "torch", {"precision": "fp32"}, "fp32", "eager")]
    if flags:
        runs.append(_Run(path, info, "torch", {"precision": "fp32", **flag_options}, "fp32", label))
    for p in config.autocast:
        runs.append(_Run(path, info, "torch", {"precision": p, **flag_options}, p, "+".join(["autocast", *flags])))
    return runs


def _plan(
    artifacts: Sequence[str | os.PathLike[str]], config: BenchConfig
) -> tuple[list[_Run], list[tuple[str, str]]]:
    """The runs to time, and the engines skipped because they cannot run here (with the reason)."""
    from dacovid_export.backends.registry import BACKEND_FOR_KIND, backend_class, unavailable_reason

    if not artifacts:
        raise UserInputError("no artifacts given: name at least one checkpoint, ONNX model or engine")
    if config.backend != "auto":
        # a runtime that is not installed is the first thing to say, whatever the artifacts
        backend_class(config.backend)
    runs: list[_Run] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for artifact in artifacts:
        path = str(artifact)
        if path in seen:
            raise UserInputError(f"artifact {path!r} is named twice")
        seen.add(path)
        info = read_artifact_info(path)
        reason = unavailable_reason(path)
        if reason is not None:
            skipped.append((path, reason))
            continue
        if config.backend == "auto":
            backend_class(BACKEND_FOR_KIND[info.kind])
        if config.image_size is not None and config.image_size != info.image_size:
            raise UserInputError(
                f"image_size={config.image_size}: {path!r} was made for {info.image_size}x{info.image_size} inputs; "
                "omit --image-size to use each artifact's own size, or export the model at that size"
            )
        # the batch limits the metadata states (a static ONNX batch, an engine profile), before loading anything
        _check_batches(info, config)
        if info.kind == "checkpoint" and config.backend in ("auto", "torch"):
            runs.extend(_torch_runs(path, info, config))
        elif info.kind == "onnx" and config.backend in ("auto", "openvino"):
            runs.extend(_onnx_runs(path, info, config))
        else:
            runs.append(_Run(path, info, config.backend, {}, None, "default"))
    if config.torch_options_set and not any(r.backend == "torch" for r in runs):
        raise UserInputError(
            "--autocast/--channels-last/--cuda-graphs/--compile apply to PyTorch checkpoints, and no checkpoint was given"
        )
    if not runs:
        from dacovid_export.core.errors import MissingDependencyError

        raise MissingDependencyError("nothing can run here: " + "; ".join(f"{p}: {r}" for p, r in skipped))
    return runs, skipped


def _onnx_runs(path: str, info: ArtifactInfo, config: BenchConfig) -> list[_Run]:
    """ONNX Runtime (auto) and OpenVINO rows of one ONNX model; see :class:`BenchConfig`."""
    from dacovid_export.backends.registry import backend_class, resolve_device

    runs: list[_Run] = []
    if config.backend == "auto":
        runs.append(_Run(path, info, "onnxruntime", {}, None, "default"))
        on_cpu = resolve_device(config.device, "onnxruntime") == "cpu"
        extra_fp32 = (config.openvino_fp32 or config.openvino_bf16) and info.precision == "fp32"
        if not (on_cpu and (info.precision == "int8" or extra_fp32)):
            return runs
        backend_class("openvino")
    if config.backend == "openvino" or info.precision == "int8" or (config.openvino_fp32 and info.precision == "fp32"):
        runs.append(_Run(path, info, "openvino", {"inference_precision": "fp32"}, None, "default"))
    if config.openvino_bf16 and info.precision == "fp32":
        from dacovid_export.core.openvino_model import cpu_supports_bf16

        if not cpu_supports_bf16():
            raise UserInputError("openvino_bf16: this CPU has no BF16 support (OpenVINO reports none); drop --openvino-bf16")
        runs.append(_Run(path, info, "openvino", {"inference_precision": "bf16"}, "bf16", "bf16"))
    return runs


def _open(run: _Run, config: BenchConfig) -> Backend:
    from dacovid_export.backends.registry import open_backend

    options = dict(run.options)
    if config.threads is not None and run.backend in ("auto", "onnxruntime") and run.info.kind == "onnx":
        options["intra_op_threads"] = config.threads
    if config.threads is not None and run.backend == "openvino":
        options["threads"] = config.threads
    return open_backend(run.path, backend=run.backend, device=config.device, **options)  # type: ignore[arg-type]


def _check_batches(info: ArtifactInfo, config: BenchConfig) -> None:
    """Every batch size against an artifact's limits (an engine's profile, a static ONNX batch)."""
    s = info.image_size
    for b in config.batch_sizes:
        # a zero-strided view of one float: check_batch rejects a bad shape before it copies anything
        check_batch(np.broadcast_to(np.zeros((), dtype=np.float32), (b, 3, s, s)), info)


# ---------------------------------------------------------------------------
# timing


def _is_cuda(backend: Backend) -> bool:
    return str(backend.device).startswith("cuda")


def _end_to_end_once(backend: Backend, batch: np.ndarray) -> None:
    backend.stage(batch)
    backend.execute_staged()
    backend.fetch()
    backend.synchronize()


def _sample(step: Callable[[], float], config: BenchConfig, desc: str) -> list[float]:
    """Call ``step`` (returns one latency in ms) for the configured iterations or duration."""
    from tqdm import tqdm

    count = config.effective_iterations
    samples: list[float] = []
    with tqdm(total=count, desc=desc, unit="it", file=sys.stderr, disable=not config.progress, leave=False) as bar:
        deadline = None if config.duration_s is None else time.perf_counter() + config.duration_s
        while True:
            samples.append(step())
            bar.update(1)
            if count is not None and len(samples) >= count:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
    return samples


def _host_steps(backend: Backend, batch: np.ndarray) -> dict[str, Callable[[], float]]:
    def end_to_end() -> float:
        t0 = time.perf_counter_ns()
        _end_to_end_once(backend, batch)
        return (time.perf_counter_ns() - t0) / 1e6

    if not _is_cuda(backend):
        return {"end_to_end": end_to_end}

    # a CUDA backend that exposes no stream: host clocks around synchronize, the best available
    def compute() -> float:
        t0 = time.perf_counter_ns()
        backend.execute_staged()
        backend.synchronize()
        return (time.perf_counter_ns() - t0) / 1e6

    return {"compute": compute, "end_to_end": end_to_end}


def _event_steps(backend: Backend, batch: np.ndarray) -> dict[str, Callable[[], float]]:
    import torch

    stream = backend.cuda_stream

    def timed(body: Callable[[], None]) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        body()
        end.record(stream)
        end.synchronize()
        backend.synchronize()
        return float(start.elapsed_time(end))

    def copy_in_compute_copy_out() -> None:
        backend.stage(batch)
        backend.execute_staged()
        backend.fetch()

    def end_to_end() -> float:
        return timed(copy_in_compute_copy_out)

    def compute() -> float:
        return timed(backend.execute_staged)

    return {"compute": compute, "end_to_end": end_to_end}


def _time_series(backend: Backend, batch: np.ndarray, config: BenchConfig, label: str) -> dict[str, tuple[list[float], str]]:
    """``{timing: (samples_ms, clock)}`` after warm-up."""
    for _ in range(config.warmup):
        _end_to_end_once(backend, batch)
    use_events = _is_cuda(backend) and backend.cuda_stream is not None
    steps = _event_steps(backend, batch) if use_events else _host_steps(backend, batch)
    clock = "cuda_event" if use_events else "perf_counter"
    out: dict[str, tuple[list[float], str]] = {}
    for timing, step in steps.items():
        if timing == "compute":
            # the input stays on the device for the whole series: compute-only by construction
            backend.stage(batch)
            backend.synchronize()
        out[timing] = (_sample(step, config, f"{label} b{len(batch)} {timing}"), clock)
    return out


def _threads_of(run: _Run, backend: Backend, config: BenchConfig) -> int | None:
    if _is_cuda(backend):
        return None
    if backend.name == "torch":
        import torch

        return torch.get_num_threads()
    if backend.name == "onnxruntime":
        reported = getattr(backend, "intra_op_threads", None)
        # None: ORT's default, one thread per physical core
        return int(reported) if isinstance(reported, int) and reported > 0 else physical_cores()
    if backend.name == "openvino":
        reported = getattr(backend, "threads", None)
        return int(reported) if isinstance(reported, int) else config.threads
    return config.threads


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_benchmark(artifacts: Sequence[str | os.PathLike[str]], config: BenchConfig = BenchConfig()) -> BenchResult:
    """Time every artifact on its backend(s) at every batch size; see the module docstring for conventions.

    Everything that can be wrong with the request (unknown artifact, missing
    runtime, a batch size an engine's profile does not allow, a wrong image
    size) raises before the first timed iteration.
    """
    from dacovid_export.bench.environment import collect_environment
    from dacovid_export.data.synthetic import synthetic_batch

    runs, skipped = _plan(artifacts, config)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    records: list[BenchRecord] = []
    with contextlib.ExitStack() as stack, _torch_threads(config.threads):
        opened: list[tuple[_Run, Backend]] = []
        for run in runs:
            backend = stack.enter_context(_open(run, config))
            _check_batches(backend.info, config)  # the loaded runtime may know more than the metadata
            opened.append((run, backend))
        inputs: dict[tuple[int, int], np.ndarray] = {}
        for run, backend in opened:
            s = backend.info.image_size
            precision = run.precision or backend.precision
            name = Path(run.path).name
            for b in config.batch_sizes:
                if (b, s) not in inputs:
                    # realistic, already-normalised inputs: FP16 paths see the value ranges real images give
                    inputs[(b, s)] = synthetic_batch(b, s, seed=config.seed)
                series = _time_series(backend, inputs[(b, s)], config, f"{name} {backend.name}/{precision}")
                for timing, (samples, clock) in series.items():
                    stats = latency_stats(samples)
                    records.append(
                        BenchRecord(
                            artifact=name,
                            artifact_path=run.path,
                            backend=backend.name,
                            precision=precision,
                            variant=run.variant,
                            device=str(backend.device),
                            timing=timing,  # type: ignore[arg-type]
                            batch=b,
                            image_size=s,
                            throughput_ips=b * 1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else float("inf"),
                            iterations=len(samples),
                            warmup=config.warmup,
                            clock=clock,
                            threads=_threads_of(run, backend, config),
                            **stats,
                        )
                    )
            # free each runtime as soon as its series are done (close is idempotent)
            backend.close()
        uses_ort = any(b.name == "onnxruntime" for _, b in opened)
        ort_threads = _ort_threads_label(opened, config) if uses_ort else None

        artifact_costs: tuple[ArtifactCost, ...] = ()
        table = None
        if config.cost:
            from dacovid_export.bench.cost import artifact_cost, cost_table

            artifact_costs = tuple(artifact_cost(run.path) for run in _unique_paths(runs))
            size = config.image_size or runs[0].info.image_size
            # inside the thread setting, so its CPU latencies use the same threads as the records
            table = cost_table(size, measure_latency=config.cost_latency, progress=config.progress)
        environment = collect_environment(ort_intra_op_threads=ort_threads)
    return BenchResult(
        records=tuple(records),
        environment=environment,
        config=config,
        artifact_costs=artifact_costs,
        cost_table=table,
        skipped=tuple(skipped),
    )


def _unique_paths(runs: Sequence[_Run]) -> list[_Run]:
    out: dict[str, _Run] = {}
    for run in runs:
        out.setdefault(run.path, run)
    return list(out.values())


def _ort_threads_label(opened: Sequence[tuple[_Run, Backend]], config: BenchConfig) -> int | str:
    if config.threads is not None:
        return config.threads
    for _, backend in opened:
        reported = getattr(backend, "intra_op_threads", None)
        if isinstance(reported, int) and reported > 0:
            return reported
    return f"{physical_cores()} (ORT default: one per physical core)"

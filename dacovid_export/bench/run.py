"""Latency of artifacts on their backends: ``run_benchmark``, the run over the planned models behind ``dacovid-bench``.

The plan (which backends, which options) is :mod:`dacovid_export.bench.plan`,
the clocks and series :mod:`dacovid_export.bench.timing`, the statistics and
records :mod:`dacovid_export.bench.records`; the files are written by
:mod:`dacovid_export.bench.report`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.backends.base import Backend
from dacovid_export.backends.registry import BACKEND_FOR_KIND
from dacovid_export.backends.triton_endpoint import TritonEndpoint
from dacovid_export.bench.config import BenchConfig
from dacovid_export.bench.cost import artifact_cost, cost_table
from dacovid_export.bench.environment import collect_environment, physical_cores
from dacovid_export.bench.gemm import cpu_rate, gemm_gflops
from dacovid_export.bench.plan import Run, check_batches, open_run, plan_runs
from dacovid_export.bench.records import (
    BenchRecord,
    BenchResult,
    ServedLevel,
    latency_stats,
)
from dacovid_export.bench.report import save_bench_result
from dacovid_export.bench.served import (
    SERVED_IMAGE_COUNT,
    encoded_images,
    time_endpoint,
    time_in_process,
)
from dacovid_export.bench.timing import is_cuda, time_series
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.log import get_logger
from dacovid_export.core.progress import progress_bar
from dacovid_export.data.synthetic import synthetic_batch

if TYPE_CHECKING:
    from dacovid_export.bench.cost import ArtifactCost, CostTable

__all__ = ["bench_to_files", "run_benchmark"]

_log = get_logger("bench")


def run_benchmark(artifacts: Sequence[str | os.PathLike[str]], config: BenchConfig = BenchConfig()) -> BenchResult:
    """Time every artifact on its backend(s) at every batch size; see :mod:`dacovid_export.bench.timing` and
    :mod:`dacovid_export.bench.records` for the conventions.

    Everything that can be wrong with the request (unknown artifact, missing
    runtime, a batch size an engine's profile does not allow, a wrong image
    size) raises before the first timed iteration.
    """
    runs, skipped = plan_runs(artifacts, config) if artifacts else ([], [])
    for path, reason in skipped:
        _log.info(f"skipped {path}: {reason}")
    with contextlib.ExitStack() as stack, _torch_threads(config.threads):
        opened = _open_runs(stack, runs, config)
        records, gemms = _time_runs(opened, config)
        ort = BACKEND_FOR_KIND["onnx"]
        ort_threads = _ort_threads_label(opened, config) if any(b.name == ort for _, b in opened) else None
        artifact_costs: tuple[ArtifactCost, ...] = ()
        table: CostTable | None = None
        if config.cost:
            # inside the thread setting, so the cost table's CPU latencies use the same threads as the records
            artifact_costs, table = _costs(runs, config)
        served: list[ServedLevel] = []
        if config.triton:
            served_records, served = _time_served(runs, config)
            records.extend(served_records)
        environment = collect_environment(ort_intra_op_threads=ort_threads)
    return BenchResult(
        records=tuple(records),
        environment=environment,
        config=config,
        artifact_costs=artifact_costs,
        cost_table=table,
        skipped=tuple(skipped),
        served=tuple(served),
        gemm_gflops=tuple(gemms),
        cpu_choices=tuple((Path(run.path).name, run.why) for run in runs if run.why),
    )


def _open_runs(stack: contextlib.ExitStack, runs: Sequence[Run], config: BenchConfig) -> list[tuple[Run, Backend]]:
    """Every planned run opened before any is timed, so a load error stops the bench before it spends time."""
    opened: list[tuple[Run, Backend]] = []
    for run in runs:
        backend = stack.enter_context(open_run(run, config))
        check_batches(backend.info, config)  # the loaded runtime may know more than the metadata
        opened.append((run, backend))
    return opened


def _time_runs(opened: Sequence[tuple[Run, Backend]], config: BenchConfig) -> tuple[list[BenchRecord], list[float]]:
    """The records of every opened run, CPU rows with their GFLOP/s, and the FP32 GEMM rates measured between them."""
    records: list[BenchRecord] = []
    inputs: dict[tuple[int, int], np.ndarray] = {}
    gemms: list[float] = []
    gflops: dict[str, float | None] = {}  # the model's GFLOPs per image, counted for CPU rows only
    for run, backend in opened:
        on_cpu = not is_cuda(backend)
        if on_cpu and not gemms:
            gemms.append(gemm_gflops())  # before the first CPU series; then after each
        if on_cpu and run.path not in gflops:
            gflops[run.path] = _gflops_per_image(run.path)
        series = _time_run(run, backend, config, inputs)
        # free each runtime as soon as its series are done (close is idempotent)
        backend.close()
        if on_cpu:
            gemms.append(gemm_gflops())
            per_image = gflops.get(run.path)
            if per_image is not None:
                reference = (gemms[-2] + gemms[-1]) / 2  # the GEMM measured either side of this series
                series = [_with_cpu_rate(r, per_image, reference) for r in series]
        records.extend(series)
    return records, gemms


def _time_run(run: Run, backend: Backend, config: BenchConfig, inputs: dict[tuple[int, int], np.ndarray]) -> list[BenchRecord]:
    """One run's records: every batch size, every timing; ``inputs`` caches the batches by (batch, size)."""
    records: list[BenchRecord] = []
    s = backend.info.image_size
    precision = run.precision or backend.precision
    name = Path(run.path).name
    for b in config.batch_sizes:
        if (b, s) not in inputs:
            # realistic, already-normalised inputs: FP16 paths see the value ranges real images give
            inputs[(b, s)] = synthetic_batch(b, s, seed=config.seed)
        series = time_series(backend, inputs[(b, s)], config, f"{name} {backend.name}/{precision}")
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
                    timing=timing,
                    batch=b,
                    image_size=s,
                    throughput_ips=b * 1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else float("inf"),
                    iterations=len(samples),
                    warmup=config.warmup,
                    clock=clock,
                    threads=None if is_cuda(backend) else backend.threads_used(config.threads),
                    **stats,
                )
            )
    return records


def _with_cpu_rate(record: BenchRecord, per_image: float, reference: float) -> BenchRecord:
    rate, fraction = cpu_rate(per_image, record.batch, record.p50_ms, reference)
    return dataclasses.replace(record, gflops_per_s=rate, gemm_fraction=fraction)


def _costs(runs: Sequence[Run], config: BenchConfig) -> tuple[tuple[ArtifactCost, ...], CostTable]:
    """Each artifact's cost, and the parameter/GFLOP table at the bench's image size."""
    artifact_costs = tuple(artifact_cost(run.path) for run in _unique_paths(runs))
    size = config.image_size or runs[0].info.image_size
    return artifact_costs, cost_table(size, measure_latency=config.cost_latency, progress=config.progress)


def bench_to_files(
    artifacts: Sequence[str | os.PathLike[str]],
    config: BenchConfig = BenchConfig(),
    *,
    json: str | os.PathLike[str] | None = None,
    csv: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
) -> tuple[BenchResult, list[Path]]:
    """``dacovid-bench``: :func:`run_benchmark`, then the files asked for (JSON, CSV, latency PNG); result and paths.

    The outputs are checked before anything is timed: a plot that is no PNG, two
    outputs on one path, or one that would overwrite a timed artifact is refused.
    """
    if not artifacts and not config.triton:
        raise UserInputError("give ARTIFACT files to time, or a served model with --triton URL")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise UserInputError(f"--plot {str(plot)!r}: the plot is a PNG; give a path ending in .png")
    check_outputs(inputs=artifacts, files={"--json": json, "--csv": csv, "--plot": plot})
    result = run_benchmark(artifacts, config)
    return result, save_bench_result(result, json=json, csv=csv, plot=plot)

def _time_served(runs: Sequence[Run], config: BenchConfig) -> tuple[list[BenchRecord], list[ServedLevel]]:
    """Every endpoint at every concurrency, and every artifact in-process as Predictor runs it, on the same PNGs."""
    with TritonEndpoint(config.triton[0], model=config.triton_model) as first:
        size = first.info().preprocessing.effective_resize_size
    images = encoded_images(SERVED_IMAGE_COUNT, size, config.seed)
    records: list[BenchRecord] = []
    levels: list[ServedLevel] = []
    paths = [run.path for run in _unique_paths(runs)]
    total = len(paths) * len(config.batch_sizes) + len(config.triton) * len(config.concurrency)
    with progress_bar(total=total, desc="served", unit="series", enabled=config.progress) as bar:
        for path in paths:
            for b in config.batch_sizes:
                records.append(time_in_process(path, images, b, config))
                bar.update(1)
        for url in config.triton:
            for concurrency in config.concurrency:
                record, level = time_endpoint(url, config.triton_model, images, concurrency, config)  # URL/MODEL wins
                records.append(record)
                levels.append(level)
                bar.update(1)
    return records, levels


def _gflops_per_image(path: str) -> float | None:
    cost = artifact_cost(path).cost
    return None if cost is None else cost.gflops


def _unique_paths(runs: Sequence[Run]) -> list[Run]:
    out: dict[str, Run] = {}
    for run in runs:
        out.setdefault(run.path, run)
    return list(out.values())


def _ort_threads_label(opened: Sequence[tuple[Run, Backend]], config: BenchConfig) -> int | str:
    if config.threads is not None:
        return config.threads
    for _, backend in opened:
        reported = getattr(backend, "intra_op_threads", None)
        if isinstance(reported, int) and reported > 0:
            return reported
    return f"{physical_cores()} (ORT default: one per physical core)"


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


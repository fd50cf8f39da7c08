"""The measurement loop: warm-up, then timed series of one backend on one batch.

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
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from dacovid_export.backends.base import Backend
from dacovid_export.bench.config import BenchConfig
from dacovid_export.bench.records import Timing
from dacovid_export.core.progress import progress_bar

__all__ = ["is_cuda", "time_series"]


def is_cuda(backend: Backend) -> bool:
    return str(backend.device).startswith("cuda")


def _end_to_end_once(backend: Backend, batch: np.ndarray) -> None:
    backend.stage(batch)
    backend.execute_staged()
    backend.fetch()
    backend.synchronize()


def _sample(step: Callable[[], float], config: BenchConfig, desc: str) -> list[float]:
    """Call ``step`` (returns one latency in ms) for the configured iterations or duration."""
    count = config.effective_iterations
    samples: list[float] = []
    with progress_bar(total=count, desc=desc, unit="it", enabled=config.progress) as bar:
        deadline = None if config.duration_s is None else time.perf_counter() + config.duration_s
        while True:
            samples.append(step())
            bar.update(1)
            if count is not None and len(samples) >= count:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
    return samples


def _host_steps(backend: Backend, batch: np.ndarray) -> dict[Timing, Callable[[], float]]:
    def end_to_end() -> float:
        t0 = time.perf_counter_ns()
        _end_to_end_once(backend, batch)
        return (time.perf_counter_ns() - t0) / 1e6

    if not is_cuda(backend):
        return {"end_to_end": end_to_end}

    # a CUDA backend that exposes no stream: host clocks around synchronize, the best available
    def compute() -> float:
        t0 = time.perf_counter_ns()
        backend.execute_staged()
        backend.synchronize()
        return (time.perf_counter_ns() - t0) / 1e6

    return {"compute": compute, "end_to_end": end_to_end}


def _event_steps(backend: Backend, batch: np.ndarray) -> dict[Timing, Callable[[], float]]:
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


def time_series(backend: Backend, batch: np.ndarray, config: BenchConfig, label: str) -> dict[Timing, tuple[list[float], str]]:
    """``{timing: (samples_ms, clock)}`` after warm-up."""
    for _ in range(config.warmup):
        _end_to_end_once(backend, batch)
    use_events = is_cuda(backend) and backend.cuda_stream is not None
    steps = _event_steps(backend, batch) if use_events else _host_steps(backend, batch)
    clock = "cuda_event" if use_events else "perf_counter"
    out: dict[Timing, tuple[list[float], str]] = {}
    for timing, step in steps.items():
        if timing == "compute":
            # the input stays on the device for the whole series: compute-only by construction
            backend.stage(batch)
            backend.synchronize()
        out[timing] = (_sample(step, config, f"{label} b{len(batch)} {timing}"), clock)
    return out


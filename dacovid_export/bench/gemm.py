"""The machine's FP32 limit, measured in the same run: a square FP32 GEMM in PyTorch, in GFLOP/s.

A CPU latency alone means nothing from one CPU to the next (cores, clock, AVX-512, AMX,
a shared machine's load). So ``dacovid-bench`` times an ``n x n`` FP32 matrix product
between its CPU series (before the first, between each two, after the last) and states
each CPU row's rate (the model's GFLOPs from :mod:`dacovid_export.bench.cost` x batch /
median latency) as a fraction of the GEMM rate measured next to it: ~1.0x is the FP32
limit of this machine, whatever the machine. Rates are ``2 n^3 / t`` (a multiply-add is
2 FLOPs, as in the model's count).
"""

from __future__ import annotations

import statistics
import time

from dacovid_export.core.limits import MAX_GEMM_SIZE, MIN_GEMM_SIZE
from dacovid_export.core.validate import check_int

__all__ = ["GEMM_SIZE", "GEMM_REPEATS", "gemm_gflops", "cpu_rate"]

GEMM_SIZE = 2048
GEMM_REPEATS = 3


def gemm_gflops(n: int = GEMM_SIZE, repeats: int = GEMM_REPEATS) -> float:
    """Median GFLOP/s of ``repeats`` FP32 ``n x n @ n x n`` products in torch (current torch threads), after one warm-up."""
    check_int("GEMM size", n, MIN_GEMM_SIZE, MAX_GEMM_SIZE)
    check_int("GEMM repeats", repeats, 1)
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    torch.matmul(a, b, out=out)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def cpu_rate(gflops_per_image: float, batch: int, p50_ms: float, gemm: float | None) -> tuple[float, float | None]:
    """``(GFLOP/s, fraction of the GEMM rate)`` of a series of median ``p50_ms`` at ``batch``."""
    rate = gflops_per_image * batch / (p50_ms / 1000.0) if p50_ms > 0 else float("inf")
    return rate, (rate / gemm if gemm else None)

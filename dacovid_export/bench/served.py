"""Latency and throughput of a live Triton endpoint, beside the in-process :class:`Predictor` on the same bytes.

A served row is what a client sees: N concurrent clients (threads, one connection
each) send one encoded image per request, back to back; client-side latency per
request (monotonic clock), images/s over the wall time of the level. Triton's own
statistics, read before and after each level, split each request's cost into queue
and compute time per model of the ensemble (preprocess, classifier, postprocess),
so the cost of serving is visible: what the client saw minus the server's total is
encoding, transport and the ensemble's hand-offs.

The ``in-process`` rows run each artifact in this process on the same encoded images
as :meth:`Predictor.predict` does (decode, preprocessing, the backend ``auto`` picks,
softmax), batch by batch: the like-for-like baseline of a served request.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from dacovid_export.backends.base import run_any_batch
from dacovid_export.backends.registry import open_backend
from dacovid_export.backends.triton_endpoint import TritonEndpoint
from dacovid_export.bench.config import BenchConfig
from dacovid_export.bench.records import BenchRecord, ServedLevel, latency_stats
from dacovid_export.core.errors import UserInputError
from dacovid_export.data.agreement import softmax
from dacovid_export.data.preprocessing import preprocess_batch
from dacovid_export.data.synthetic import synthetic_image

__all__ = ["SERVED_IMAGE_COUNT", "encoded_images", "time_endpoint", "time_in_process"]

# distinct encoded images the clients cycle through (decoding is part of what is timed)
SERVED_IMAGE_COUNT = 16


def encoded_images(count: int, size: int, seed: int) -> list[bytes]:
    """``count`` seeded synthetic chest-X-ray-like PNGs of ``size x size`` (grey, 8-bit), as a client sends them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_image(i % 3, size, rng), mode="L").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def time_endpoint(url: str, model: str, images: Sequence[bytes], concurrency: int, config: BenchConfig) -> tuple[BenchRecord, ServedLevel]:
    """One served level: ``concurrency`` clients, each sending ``iterations`` requests of one image after ``warmup``."""
    if concurrency < 1:
        raise UserInputError(f"concurrency={concurrency!r}: must be >= 1")
    per_client = config.effective_iterations or 20
    with TritonEndpoint(url, model=model) as observer:
        info = observer.info()
        samples: list[list[float]] = [[] for _ in range(concurrency)]
        failures: list[BaseException] = []
        # every client warms up, the server's counters are read, then all start together
        # (the HTTP client is gevent-based: each thread makes its own)
        warmed, start_line = threading.Barrier(concurrency + 1), threading.Barrier(concurrency + 1)

        def work(k: int) -> None:
            try:
                with TritonEndpoint(url, model=model) as client:
                    for i in range(config.warmup):
                        client.classify([images[i % len(images)]])
                    warmed.wait()
                    start_line.wait()
                    for i in range(per_client):
                        image = images[(k * per_client + i) % len(images)]
                        t0 = time.perf_counter()
                        client.classify([image])
                        samples[k].append((time.perf_counter() - t0) * 1000.0)
            except threading.BrokenBarrierError:
                pass
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread below
                failures.append(exc)
                warmed.abort()
                start_line.abort()

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(concurrency)]
        for thread in threads:
            thread.start()
        before = None
        try:
            warmed.wait()
            before = observer.statistics()
            start_line.wait()
        except threading.BrokenBarrierError:
            pass
        t0 = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
        if failures:
            raise failures[0]
        after = observer.statistics()
        before = before or {}
        address = observer.url, observer.protocol
        model = observer.model
    flat = [s for part in samples for s in part]
    stats = latency_stats(flat)
    server = {name: after[name].minus(before[name]) for name in after if name in before}
    level = ServedLevel(
        url=address[0], model=model, concurrency=concurrency, requests=len(flat), wall_s=wall,
        images_per_s=len(flat) / wall if wall > 0 else float("inf"), client_p50_ms=stats["p50_ms"],
        client_mean_ms=stats["mean_ms"], server=server,
    )  # fmt: skip
    record = BenchRecord(
        artifact=f"{address[0]}/{model}", artifact_path=f"{address[0]}/{model}", backend=f"triton/{address[1]}", precision=info.precision, variant=f"concurrency {concurrency}",
        device=f"served/{info.extra.get('kind') or '?'}", timing="end_to_end", batch=1, image_size=info.image_size,
        throughput_ips=level.images_per_s, iterations=len(flat), warmup=config.warmup, clock="perf_counter",
        threads=None, **stats,
    )  # fmt: skip
    return record, level


def time_in_process(path: str, images: Sequence[bytes], batch: int, config: BenchConfig) -> BenchRecord:
    """The artifact in this process on the same encoded images, ``batch`` per call, as ``Predictor.predict`` runs it:
    decode + preprocessing + the backend ``auto`` picks + softmax."""
    iterations = config.effective_iterations or 20
    with open_backend(path, device=config.device) as backend:
        info = backend.info
        calls = [[images[(i * batch + j) % len(images)] for j in range(batch)] for i in range(config.warmup + iterations)]
        samples = []
        for n, call in enumerate(calls):
            t0 = time.perf_counter()
            softmax(run_any_batch(backend, preprocess_batch(call, info.preprocessing), batch))
            if n >= config.warmup:
                samples.append((time.perf_counter() - t0) * 1000.0)
        stats = latency_stats(samples)
        return BenchRecord(
            artifact=path.rsplit("/", 1)[-1], artifact_path=path, backend=f"in-process/{backend.name}",
            precision=info.precision, variant="encoded images", device=str(backend.device), timing="end_to_end",
            batch=batch, image_size=info.image_size,
            throughput_ips=batch * 1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else float("inf"),
            iterations=len(samples), warmup=config.warmup, clock="perf_counter", threads=None, **stats,
        )  # fmt: skip

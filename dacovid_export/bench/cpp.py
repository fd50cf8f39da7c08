"""End-to-end latency of the C++ runtime beside Python's Predictor: same files, same runtime, one run.

Per image, end to end: decode + preprocessing + inference + softmax. The C++ side times itself
(``dacovid_infer --time``: a warm-up pass, then a timed pass, each full batch on a monotonic clock, no
process start-up counted); the Python side is what ``Predictor.predict`` does per call (decode,
preprocessing, the backend, softmax; as ``bench/served.py`` times it), on OpenVINO, the runtime the C++
side uses for ONNX. The two sides' passes alternate ``repeats`` times, so a load change on a shared
machine hits both alike. The ratio is C++ / Python of the median milliseconds per image; below 1 the
C++ runtime is faster.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dacovid_export.backends.base import Backend, run_any_batch
from dacovid_export.backends.cpp_runtime import CppRuntime
from dacovid_export.backends.registry import open_backend
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_batch_size
from dacovid_export.core.validate import check_int
from dacovid_export.data.agreement import softmax
from dacovid_export.data.preprocessing import preprocess_batch

__all__ = ["CppBenchConfig", "CppBenchRow", "bench_cpp", "format_cpp_table"]


@dataclasses.dataclass(frozen=True)
class CppBenchConfig:
    """``binary``: a built ``dacovid_infer``; ``model``: an ONNX model; ``images``: a folder (its first ``count`` files)."""

    binary: str
    model: str
    images: str
    batch_sizes: tuple[int, ...] = (1, 8)
    repeats: int = 3
    count: int = 64

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise UserInputError("batch_sizes=(): give at least one batch size")
        for b in self.batch_sizes:
            check_batch_size(b, "batch size")
        for name in ("repeats", "count"):
            check_int(name, getattr(self, name), 1)
        if Path(self.model).suffix.lower() != ".onnx":
            raise UserInputError(f"model {self.model!r}: the C++ latency is compared on an ONNX model (OpenVINO on both sides)")
        too_big = [b for b in self.batch_sizes if b > self.count]
        if too_big:
            raise UserInputError(f"batch size {too_big[0]} exceeds the {self.count} images timed: raise the image count or lower the batch")


@dataclasses.dataclass(frozen=True)
class CppBenchRow:
    batch: int
    images: int
    cpp_ms_per_image: float  # median over full batches
    python_ms_per_image: float
    runtime: str

    @property
    def ratio(self) -> float:
        return self.cpp_ms_per_image / self.python_ms_per_image

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


def _python_pass_ms(backend: Backend, files: Sequence[Path], batch: int) -> list[float]:
    """What Predictor.predict does per call (decode, preprocessing, the backend, softmax), as bench/served.py times it."""
    spec = backend.info.preprocessing
    times: list[float] = []
    for start in range(0, len(files) - batch + 1, batch):
        t0 = time.perf_counter()
        softmax(run_any_batch(backend, preprocess_batch(files[start : start + batch], spec), batch))
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def bench_cpp(config: CppBenchConfig) -> list[CppBenchRow]:
    """One row per batch size: C++ and Python milliseconds per image on the same files, and their ratio."""
    from dacovid_export.data.image_folder import find_images

    files = find_images(config.images)[: config.count]
    if len(files) < config.count:
        raise UserInputError(f"{config.images!r} holds {len(files)} images; {config.count} are timed: give more or lower the count")
    runtime = CppRuntime(config.binary, config.model)
    described = runtime.describe()
    rows = []
    for batch in config.batch_sizes:
        cpp: list[float] = []
        python: list[float] = []
        with open_backend(config.model, backend="openvino", device="cpu") as backend:
            _python_pass_ms(backend, files, batch)  # warm-up, as dacovid_infer --time does its own
            # interleaved passes, so a load change on a shared machine hits both sides alike
            for _ in range(config.repeats):
                cpp += runtime.time_files(files, batch, 1)
                python += _python_pass_ms(backend, files, batch)
        rows.append(CppBenchRow(batch, len(files), statistics.median(cpp) / batch, statistics.median(python) / batch, described))
    return rows


def format_cpp_table(rows: Sequence[CppBenchRow], model: str | os.PathLike[str]) -> str:
    lines = [
        f"C++ runtime vs Python Predictor, end to end (decode + preprocessing + inference + softmax), {Path(model).name}, "
        f"{rows[0].runtime if rows else ''}, {rows[0].images if rows else 0} images",
        "",
        "| batch | C++ ms/image | Python ms/image | C++ / Python |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r.batch} | {r.cpp_ms_per_image:.3f} | {r.python_ms_per_image:.3f} | {r.ratio:.2f}x |" for r in rows]
    return "\n".join(lines) + "\n"

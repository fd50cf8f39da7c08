"""Which runtime runs an FP32 ONNX model fastest *and faithfully* on this CPU: measured once, then cached.

Why a measurement and not a rule: the winner depends on the CPU. On an AMD EPYC (AVX-512,
no AMX) ONNX Runtime FP32 was the faster; on an Intel Xeon with AMX, OpenVINO with
``INFERENCE_PRECISION_HINT=f32`` ran the same model 1.8x faster (docs/design.md section 5).
No CPU flag predicts this reliably, so ``auto`` measures:

1. both runtimes open the artifact (OpenVINO always at ``f32``: BF16 is never chosen here);
2. faithfulness first: OpenVINO's logits on a seeded, image-like batch must equal ONNX
   Runtime's within :data:`FAITHFUL_ATOL` (+ :data:`FAITHFUL_RTOL` of the logits' scale) with
   the same top-1; otherwise OpenVINO is not a candidate, however fast;
3. speed: one warm-up each, then :data:`ROUNDS` interleaved rounds (ORT, OpenVINO, ORT, ...),
   batch 1, medians compared. OpenVINO wins only if its median is below
   :data:`WIN_RATIO` x ONNX Runtime's, so noise on a shared machine does not flip the choice.

The result is cached as JSON under ``$XDG_CACHE_HOME/dacovid-export/cpu-choice`` (else
``~/.cache/...``), keyed by the CPU (model name, feature flags, logical cores), the thread
count, the ONNX Runtime and OpenVINO versions and the artifact's sha256, and written
atomically, so it is paid once per machine and model. ``DACOVID_CPU_RUNTIME`` pins the
choice without measuring: ``onnxruntime`` or ``openvino`` (``measure``, the default, measures).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.core.errors import DacovidError, UserInputError
from dacovid_export.core.fileio import atomic_write_json, sha256_file
from dacovid_export.core.log import get_logger
from dacovid_export.core.text import escape_text
from dacovid_export.core.validate import check_int, is_int, is_number
from dacovid_export.core.versions import package_version

__all__ = [
    "CHOICE_ENV",
    "CHOICES",
    "FAITHFUL_ATOL",
    "FAITHFUL_RTOL",
    "ROUNDS",
    "WIN_RATIO",
    "CpuChoice",
    "choice_cache_dir",
    "cpu_identity",
    "choose_cpu_runtime",
]

_log = get_logger("backends")

CHOICE_ENV = "DACOVID_CPU_RUNTIME"
CHOICES = ("measure", "onnxruntime", "openvino")
FAITHFUL_ATOL = 1e-3
FAITHFUL_RTOL = 1e-4
ROUNDS = 3
WIN_RATIO = 0.9
_RECIPE = 1  # bump when the measurement changes, so old cache entries are not reused
# this process's answers by (file identity, threads, cache folder): a pipeline opens one model many times,
# and hashing a 170 MB model each time would cost more than reading the cache
_SEEN: dict[tuple[Any, ...], Path] = {}


@dataclasses.dataclass(frozen=True)
class CpuChoice:
    """The runtime for an FP32 ONNX model on this CPU, and the evidence.

    ``backend``: ``"onnxruntime"`` or ``"openvino"``; ``source``: ``"measured"``, ``"cache"`` or
    ``"pinned"``; ``ort_ms``/``openvino_ms``: medians of the interleaved rounds (None if not
    measured); ``max_abs_diff``: OpenVINO f32 vs ONNX Runtime on the check batch (None if not
    compared); ``faithful``: whether OpenVINO passed the check; ``reason``: one sentence.
    """

    backend: str
    source: str
    reason: str
    ort_ms: float | None = None
    openvino_ms: float | None = None
    max_abs_diff: float | None = None
    faithful: bool | None = None
    threads: int | None = None
    cache_file: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "openvino"):
            raise UserInputError(f"CpuChoice.backend={self.backend!r}: must be 'onnxruntime' or 'openvino'")
        if self.source not in ("measured", "cache", "pinned"):
            raise UserInputError(f"CpuChoice.source={self.source!r}: must be 'measured', 'cache' or 'pinned'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def sentence(self, name: str) -> str:
        """The stderr line ``auto`` prints."""
        runtime = "OpenVINO (f32)" if self.backend == "openvino" else "ONNX Runtime"
        where = {"measured": "measured now", "cache": f"cached in {self.cache_file}", "pinned": f"pinned by {CHOICE_ENV}"}
        return f"backend auto: {name} is FP32 on the CPU: using {runtime}: {self.reason} ({where[self.source]})"


def choice_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "dacovid-export" / "cpu-choice"


def cpu_identity() -> dict[str, Any]:
    """The CPU as the cache key sees it: model name, a digest of its feature flags, logical cores."""
    model, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                low = line.lower()
                if low.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif low.startswith(("flags", "features")) and not flags:
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        import platform

        model = platform.processor() or platform.machine() or "unknown"
    return {"model": model, "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16], "logical_cores": os.cpu_count() or 1}


def _pinned() -> str:
    value = os.environ.get(CHOICE_ENV, "").strip().lower() or "measure"
    if value not in CHOICES:
        raise UserInputError(
            f"{CHOICE_ENV}={os.environ.get(CHOICE_ENV)!r}: use one of {', '.join(CHOICES)} "
            "(measure: time both runtimes once per model and CPU, the default)"
        )
    return value


def choose_cpu_runtime(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    rounds: int = ROUNDS,
    cache_dir: str | os.PathLike[str] | None = None,
) -> CpuChoice:
    """The faster faithful runtime for the FP32 ONNX model at ``path`` on this CPU (see the module docstring).

    OpenVINO not installed -> ONNX Runtime without measuring. ``threads``: the thread count
    both runtimes are timed with (None: their defaults); part of the cache key.
    """
    check_int("rounds", rounds, 1)
    pinned = _pinned()
    if pinned != "measure":
        return CpuChoice(backend=pinned, source="pinned", reason=f"{CHOICE_ENV}={pinned}", threads=threads)
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return CpuChoice(
            backend="onnxruntime", source="pinned", reason="openvino is not installed (pip install openvino to compare)",
            threads=threads,
        )
    folder = Path(cache_dir) if cache_dir is not None else choice_cache_dir()
    st = os.stat(path)
    seen_key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino, threads, rounds, str(folder))
    known = _read(_SEEN[seen_key]) if seen_key in _SEEN else None  # the small JSON is still read: it may be gone
    if known is not None:
        return dataclasses.replace(known, source="cache", cache_file=str(_SEEN[seen_key]))
    fields = {
        "recipe": _RECIPE,
        "cpu": cpu_identity(),
        "threads": threads,
        "onnxruntime": package_version("onnxruntime", "onnxruntime-gpu"),
        "openvino": package_version("openvino"),
        "artifact_sha256": sha256_file(path),
    }
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    entry = folder / f"{key}.json"
    cached = _read(entry)
    if cached is not None:
        _SEEN[seen_key] = entry
        return dataclasses.replace(cached, source="cache", cache_file=str(entry))
    choice = _measure(path, threads=threads, rounds=rounds)
    try:
        atomic_write_json(entry, {"key": fields, "choice": choice.to_dict()})
        choice = dataclasses.replace(choice, cache_file=str(entry))
        _SEEN[seen_key] = entry
    except (OSError, DacovidError) as exc:  # an unwritable cache costs a measurement next time, nothing else
        _log.warning(f"warning: could not cache the CPU runtime choice in {str(folder)!r}: {exc}")
    return choice


def _read(entry: Path) -> CpuChoice | None:
    """The cached choice in ``entry``, checked field by field; None (measure again) when missing, broken or edited.

    The cache is a file anyone with the account can edit: its ``reason`` is printed on stderr, so
    control characters are escaped (no terminal escapes, no forged ``error:`` line), and OpenVINO
    is taken only from an entry that says it passed the faithfulness check.
    """
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))["choice"]
        if not isinstance(data, dict):
            return None
        fields = {k: data[k] for k in (f.name for f in dataclasses.fields(CpuChoice)) if k in data}
        if not isinstance(fields.get("reason"), str) or fields.get("faithful") not in (True, False, None):
            return None
        for name in ("ort_ms", "openvino_ms", "max_abs_diff"):
            value = fields.get(name)
            if value is not None and not (is_number(value) and math.isfinite(value)):
                return None
        threads = fields.get("threads")
        if threads is not None and not is_int(threads):
            return None
        if fields.get("backend") == "openvino" and fields.get("faithful") is not True:
            return None  # an entry that says OpenVINO was not faithful (or says nothing) never makes auto pick it
        fields["reason"] = escape_text(fields["reason"])
        fields.pop("cache_file", None)  # where it is cached is where it was read: set by the caller
        return CpuChoice(**fields)
    except (OSError, ValueError, KeyError, TypeError, UserInputError):
        return None  # missing or broken: measure again and rewrite


def _measure(path: str | os.PathLike[str], *, threads: int | None, rounds: int) -> CpuChoice:
    from dacovid_export.artifacts.read import read_artifact_info
    from dacovid_export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dacovid_export.backends.openvino_backend import OpenVINOBackend
    from dacovid_export.data.synthetic import synthetic_batch

    info = read_artifact_info(path)
    timed = max(1, info.min_batch)  # batch 1, or a static-batch model's one batch size
    check = synthetic_batch(max(2, timed), info.image_size, seed=0)[: max(2, timed) if info.max_batch is None else timed]
    one = check[:timed]
    with OnnxRuntimeBackend(path, device="cpu", intra_op_threads=threads, info=info) as ort, OpenVINOBackend(
        path, inference_precision="fp32", threads=threads, info=info
    ) as ov:
        ref, got = ort.run(check), ov.run(check)
        diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
        bound = FAITHFUL_ATOL + FAITHFUL_RTOL * float(np.max(np.abs(ref)))
        faithful = bool(np.isfinite(diff) and diff <= bound and np.array_equal(got.argmax(1), ref.argmax(1)))
        if not faithful:
            return CpuChoice(
                backend="onnxruntime", source="measured", faithful=False, max_abs_diff=diff, threads=threads,
                reason=f"OpenVINO f32 is not faithful here (max |dlogit| {diff:.3g} > {bound:.3g}, or top-1 differs)",
            )
        ort.run(one), ov.run(one)  # warm-up
        times: dict[str, list[float]] = {"ort": [], "ov": []}
        for _ in range(rounds):
            for label, backend in (("ort", ort), ("ov", ov)):
                start = time.perf_counter()
                backend.run(one)
                times[label].append((time.perf_counter() - start) * 1000.0)
    ort_ms, ov_ms = statistics.median(times["ort"]), statistics.median(times["ov"])
    ratio = ov_ms / ort_ms if ort_ms > 0 else float("inf")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    figures = (
        f"batch {timed}, {rounds} interleaved rounds: OpenVINO f32 {ov_ms:.1f} ms vs ONNX Runtime {ort_ms:.1f} ms "
        f"({ratio:.2f}x), outputs within {diff:.2g}; load average {load}"
    )
    backend = "openvino" if ratio < WIN_RATIO else "onnxruntime"
    why = "faster and faithful" if backend == "openvino" else f"not {1 / WIN_RATIO:.2f}x faster with OpenVINO"
    return CpuChoice(
        backend=backend, source="measured", reason=f"{why}; {figures}", ort_ms=ort_ms, openvino_ms=ov_ms,
        max_abs_diff=diff, faithful=True, threads=threads,
    )

"""On-disk cache of INT8 calibration results.

What is cached: the whole quantized ONNX model, keyed by everything that decides it
(source model sha256, calibration image set sha256 and array digest, method, Model
Optimizer and ONNX Runtime versions, this package's quantization recipe version).
Model Optimizer's own ``calibration_cache_path`` is not used: it reads TensorRT-style
activation scales but still runs calibration and then overwrites the scales, so it
saves no time. The model (as large as the FP32 model, the weights are stored in FP32
behind QuantizeLinear) is the cheapest thing to reuse.

Layout: ``<dir>/<key>.onnx`` and ``<dir>/<key>.json`` (the key fields, the model's
sha256). The JSON is written last, so an entry without it is incomplete and ignored;
an entry whose model does not match its recorded sha256 is ignored and rewritten.
Default directory: ``$XDG_CACHE_HOME/dacovid-export/calibration``, else
``~/.cache/dacovid-export/calibration`` (``--cache-dir`` chooses another).

Size: each entry is as large as the FP32 model (~170 MB at 224x224), so the cache is
capped, least recently used entries first out: :data:`DEFAULT_MAX_GB` (2 GB) unless
the environment variable ``DACOVID_CACHE_MAX_GB`` says otherwise (a number of GB;
``0`` keeps nothing). Every write says on stderr where the cache is and how big it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import atomic_path, atomic_write_json, sha256_file
from dacovid_export.core.log import get_logger
from dacovid_export.core.validate import check_int

__all__ = ["DEFAULT_MAX_GB", "MAX_GB_ENV", "default_cache_dir", "cache_key", "cache_max_bytes", "CalibrationCache"]

_log = get_logger("calibration")

DEFAULT_MAX_GB = 2.0
MAX_GB_ENV = "DACOVID_CACHE_MAX_GB"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "dacovid-export" / "calibration"


def cache_max_bytes() -> int:
    """The cache's size cap in bytes: ``$DACOVID_CACHE_MAX_GB`` GB (10^9 bytes), else :data:`DEFAULT_MAX_GB`."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    if not text:
        return int(DEFAULT_MAX_GB * 1e9)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserInputError(
            f"{MAX_GB_ENV}={text!r}: give the calibration cache's size cap as a number of GB >= 0 "
            f"(default {DEFAULT_MAX_GB:g}; 0 keeps nothing)"
        )
    return int(value * 1e9)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def cache_key(fields: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(dict(fields), sort_keys=True).encode("utf-8")).hexdigest()


class CalibrationCache:
    """Quantized models by key; a broken or unwritable cache only costs a recalibration."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, max_bytes: int | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise UserInputError(f"calibration cache {str(self.directory)!r} is a file, not a folder")
        if max_bytes is not None:
            check_int("max_bytes", max_bytes, 0, why=" (the cache's size cap in bytes)")
        self.max_bytes = cache_max_bytes() if max_bytes is None else max_bytes

    def model_path(self, key: str) -> Path:
        return self.directory / f"{key}.onnx"

    def _meta_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def lookup(self, key: str) -> Path | None:
        """Path of the cached model for ``key``, or None when absent or damaged."""
        meta_path, model_path = self._meta_path(key), self.model_path(key)
        if not meta_path.is_file() or not model_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            intact = meta.get("key") == key and meta.get("model_sha256") == sha256_file(model_path)
        except (OSError, ValueError, AttributeError):
            intact = False
        if not intact:
            _log.warning(f"calibration cache: entry {key[:12]} is damaged; calibrating again")
            return None
        with contextlib.suppress(OSError):
            os.utime(meta_path)  # last use: the eviction order
        return model_path

    def store(self, key: str, model_bytes: bytes, fields: Mapping[str, object]) -> Path | None:
        """Save an entry; returns its model path, or None (and says why on stderr) when the cache is unwritable."""
        model_path = self.model_path(key)
        if len(model_bytes) > self.max_bytes:
            _log.info(f"calibration cache: the model ({_size(len(model_bytes))}) is over the cache's cap of "
                f"{_size(self.max_bytes)} ({MAX_GB_ENV}); result not cached")
            return None
        try:
            with atomic_path(model_path) as tmp:
                tmp.write_bytes(model_bytes)
            meta = {
                "key": key,
                "fields": dict(fields),
                "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
                "model_bytes": len(model_bytes),
            }
            atomic_write_json(self._meta_path(key), meta)
        except OSError as exc:
            _log.info(f"calibration cache: cannot write to {str(self.directory)!r} ({exc}); result not cached")
            return None
        self._evict(keep=key)
        return model_path

    def _entries(self) -> list[tuple[float, int, str]]:
        """``(last use, bytes, key)`` of every entry, complete or not, oldest first."""
        entries = []
        for model in self.directory.glob("*.onnx"):
            if model.name.startswith("."):
                continue  # a write in progress (atomic_path's temporary file)
            key = model.stem
            meta = self._meta_path(key)
            try:
                used = meta.stat().st_mtime if meta.is_file() else 0.0  # incomplete entries go first
                nbytes = model.stat().st_size + (meta.stat().st_size if meta.is_file() else 0)
            except OSError:
                continue
            entries.append((used, nbytes, key))
        return sorted(entries)

    def _evict(self, keep: str) -> None:
        """Remove least recently used entries (never ``keep``) until the cache fits its cap; say where and how big it is."""
        entries = self._entries()
        total = sum(nbytes for _, nbytes, _ in entries)
        removed = 0
        for _, nbytes, key in entries:
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            for path in (self._meta_path(key), self.model_path(key)):  # the JSON first: no entry looks complete half-removed
                with contextlib.suppress(OSError):
                    path.unlink()
            total -= nbytes
            removed += 1
        _log.info(f"calibration cache: {self.directory} holds {len(entries) - removed} entr{'y' if len(entries) - removed == 1 else 'ies'}, "
            f"{_size(total)} of its {_size(self.max_bytes)} cap"
            + (f" ({removed} least recently used removed)" if removed else "")
            + f"; set {MAX_GB_ENV} (GB) to change the cap, or --cache-dir to move it")

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
``~/.cache/dacovid-export/calibration``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import atomic_path, atomic_write_json, sha256_file

__all__ = ["default_cache_dir", "cache_key", "CalibrationCache"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "dacovid-export" / "calibration"


def cache_key(fields: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(dict(fields), sort_keys=True).encode("utf-8")).hexdigest()


class CalibrationCache:
    """Quantized models by key; a broken or unwritable cache only costs a recalibration."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise UserInputError(f"calibration cache {str(self.directory)!r} is a file, not a folder")

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
            print(f"calibration cache: entry {key[:12]} is damaged; calibrating again", file=sys.stderr)
            return None
        return model_path

    def store(self, key: str, model_bytes: bytes, fields: Mapping[str, object]) -> Path | None:
        """Save an entry; returns its model path, or None (and says why on stderr) when the cache is unwritable."""
        model_path = self.model_path(key)
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
            print(
                f"calibration cache: cannot write to {str(self.directory)!r} ({exc}); result not cached",
                file=sys.stderr,
            )
            return None
        return model_path

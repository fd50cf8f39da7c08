"""What a precision model says about its step: the FP32 file's metadata, what the step did, its guard's report.

The precision tools write plain ONNX files; :func:`precision_metadata` is what is stamped on them
again, and :func:`guard_report_of` reads the guard's report back, typed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dacovid_export.artifacts.onnx_metadata import read_metadata
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.data import CalibrationSet
from dacovid_export.calibration.guard_report import AccuracyReport
from dacovid_export.calibration.precisions import guard_report_types
from dacovid_export.calibration.result import PrecisionResult
from dacovid_export.core.fileio import sha256_file
from dacovid_export.core.versions import package_versions

__all__ = ["GUARD_KEYS", "precision_metadata", "guard_report_of", "guard_fingerprints"]


def precision_metadata(
    fp32_path: Path, fp32_meta: Mapping[str, str], config: PrecisionConfig, step: PrecisionResult,
    calibration: CalibrationSet | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = dict(fp32_meta)
    producer = json.loads(meta.get("producer", "{}"))
    producer["precision_step"] = f"dacovid_export.calibration ({config.precision}, {config.kind.producer_tool})"
    versions = package_versions()
    meta.update(
        {
            "precision": config.precision,
            "fp32_nodes": list(step.fp32_nodes),
            "parent_sha256": sha256_file(fp32_path),
            "producer": producer,
            "versions": versions,
        }
    )
    if calibration is not None:
        meta["calibration"] = {
            **calibration.describe(),
            "method": step.details.get("method") if config.kind.calibration_method else None,
        }
    if step.guard is not None:
        # the accuracy guard's verdict travels with the model (int8_guard / fp16_guard / bf16_guard); read it back
        # with guard_report_of
        meta[step.guard.METADATA_KEY] = step.guard.to_dict()
    return meta


# the metadata (and report.json) key each guard's report is written under (calibration.precisions: guard_report)
GUARD_KEYS = tuple(kind.METADATA_KEY for kind in guard_report_types())


def guard_report_of(metadata: Mapping[str, Any]) -> AccuracyReport | None:
    """The accuracy guard's report in a precision model's metadata (raw strings or parsed values), typed.

    The same object the step wrote, so the pipeline report and the step render it with the same ``lines()``.
    """
    for kind in guard_report_types():
        data = metadata.get(kind.METADATA_KEY)
        if isinstance(data, str):
            data = json.loads(data)
        if data:
            return kind.from_dict(data)
    return None


def guard_fingerprints(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The content fingerprints of the images the ONNX model's accuracy guard chose it on (none: unguarded)."""
    from dacovid_export.calibration.guard_report import validation_fingerprints

    return validation_fingerprints(guard_report_of(read_metadata(path)))

"""The whole precision step: FP32 ONNX -> self-checked FP16 (AutoCast) or INT8 (Q/DQ, accuracy-guarded) ONNX.

Public API (the modules import only NumPy at load time; Model Optimizer, ONNX, ONNX Runtime and
OpenVINO load when a function runs, so these eager re-exports cost no more than one of them):

- :func:`convert_precision` (``calibration.convert``) / :class:`PrecisionConfig` (``calibration.config``): the step itself, checked and
  written with its metadata; :func:`export_at_precision`: ``dacovid-export onnx`` (FP32 export, then this step)
- :func:`load_calibration_set` / :class:`CalibrationSet` (``calibration.data``)
- :func:`convert_fp16` (``calibration.fp16``)
- :func:`quantize_int8` (``calibration.int8``): one calibration pass, unchecked accuracy
- :func:`guarded_quantize_int8` / :class:`GuardConfig` (``calibration.guard``): INT8 that must agree with FP32
  on validation images (:func:`split_calibration_set`, :func:`load_validation_set`), with per-node fallback
- :func:`guard_bf16` / :class:`Bf16GuardConfig` (``calibration.bf16``): BF16 execution (OpenVINO) of an FP32
  model judged like INT8, agreement with FP32 on validation images, refused below the target
- :class:`PrecisionResult` (``calibration.result``)
"""

from dacovid_export.calibration.bf16 import Bf16GuardConfig, Bf16GuardReport, guard_bf16
from dacovid_export.calibration.cache import default_cache_dir
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import convert_precision, export_at_precision
from dacovid_export.calibration.data import (
    MIN_CALIBRATION_IMAGES,
    CalibrationSet,
    load_calibration_set,
    load_validation_set,
    split_calibration_set,
)
from dacovid_export.calibration.fp16 import convert_fp16
from dacovid_export.calibration.guard import (
    GuardConfig,
    GuardFailedError,
    GuardReport,
    guarded_quantize_int8,
)
from dacovid_export.calibration.int8 import quantize_int8
from dacovid_export.calibration.result import PrecisionResult

__all__ = [
    "PrecisionConfig",
    "convert_precision",
    "export_at_precision",
    "MIN_CALIBRATION_IMAGES",
    "CalibrationSet",
    "load_calibration_set",
    "load_validation_set",
    "split_calibration_set",
    "GuardConfig",
    "GuardReport",
    "GuardFailedError",
    "guarded_quantize_int8",
    "Bf16GuardConfig",
    "Bf16GuardReport",
    "guard_bf16",
    "convert_fp16",
    "quantize_int8",
    "PrecisionResult",
    "default_cache_dir",
]

"""Checkpoint -> self-checked FP32 ONNX model.

:mod:`.onnx_export` (:func:`~.onnx_export.export_onnx`), :mod:`.config` (its
validated options and the self-check tolerances), :mod:`.checks` (the
structural graph checks every ONNX model passes), :mod:`.result` (what was
written and how it was checked) and :mod:`.files` (output checks, one
self-contained file, atomic publication). FP16/INT8 models are the precision
step's (:mod:`dacovid_export.calibration.convert`).
"""

from dacovid_export.export.config import OnnxExportConfig
from dacovid_export.export.onnx_export import export_onnx
from dacovid_export.export.result import OnnxExportResult

__all__ = ["OnnxExportConfig", "OnnxExportResult", "export_onnx"]

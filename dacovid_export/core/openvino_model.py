"""OpenVINO models compiled one way for the CPU: the inference precision always set, and read back.

On CPUs with AVX512-BF16 or AMX, OpenVINO's default inference precision is BF16,
even for an "FP32" model (docs/design.md section 5). So every compile here sets
``INFERENCE_PRECISION_HINT`` and checks that the plugin kept it: a hint it
silently ignored would be a false precision claim. The OpenVINO backend and the
precision step's guard both compile through :func:`compile_for_cpu`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dacovid_export.core.deps import require
from dacovid_export.core.errors import (
    IncompatibleArtifactError,
    UserInputError,
    first_line,
)

__all__ = ["INFERENCE_PRECISIONS", "openvino_core", "cpu_supports_bf16", "compile_for_cpu", "infer_logits"]

# our names -> OpenVINO's INFERENCE_PRECISION_HINT values
INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def openvino_core(purpose: str = "run ONNX models with OpenVINO on the CPU") -> tuple[Any, Any]:
    """``(openvino module, openvino.Core())``, or :class:`MissingDependencyError` naming what to install."""
    ov = require("openvino", purpose)
    return ov, ov.Core()


def cpu_supports_bf16(core: Any = None) -> bool:
    """Whether OpenVINO's CPU plugin reports BF16 among its optimization capabilities (AVX512-BF16/AMX)."""
    if core is None:
        _, core = openvino_core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_for_cpu(
    path: str | os.PathLike[str],
    *,
    inference_precision: str = "fp32",
    threads: int | None = None,
    performance_hint: str | None = None,
    core: tuple[Any, Any] | None = None,
) -> Any:
    """The ONNX file ``path`` compiled for OpenVINO's CPU plugin at ``inference_precision``.

    ``threads``: ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default, all cores);
    ``performance_hint``: ``"LATENCY"``/``"THROUGHPUT"`` or ``None`` for the plugin's
    default; ``core``: an ``openvino_core()`` pair to reuse. A file OpenVINO cannot
    read raises :class:`UserInputError`; a precision the plugin did not keep,
    :class:`IncompatibleArtifactError`.
    """
    if inference_precision not in INFERENCE_PRECISIONS:
        raise UserInputError(f"inference_precision={inference_precision!r}: choose one of {', '.join(INFERENCE_PRECISIONS)}")
    ov, ov_core = core if core is not None else openvino_core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[inference_precision]}
    if performance_hint is not None:
        config["PERFORMANCE_HINT"] = performance_hint
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = ov_core.compile_model(ov_core.read_model(os.fspath(path)), "CPU", config)
    except RuntimeError as exc:
        raise UserInputError(f"OpenVINO could not load {os.fspath(path)!r}: {first_line(exc)}") from exc
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    want = getattr(ov.Type, INFERENCE_PRECISIONS[inference_precision])
    if got != want:
        raise IncompatibleArtifactError(
            f"OpenVINO compiled {os.fspath(path)!r} with inference precision {got}, not the requested {want}"
        )
    return compiled


def infer_logits(request: Any, batch: np.ndarray) -> np.ndarray:
    """float32 output 0 of one infer request on a float32 batch (a copy: the request reuses its buffer)."""
    request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
    return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

"""OpenVINO models compiled one way for the CPU: the inference precision always set, and read back.

On CPUs with AVX512-BF16 or AMX, OpenVINO's default inference precision is BF16,
even for an "FP32" model (docs/design.md section 5). So every compile here sets
``INFERENCE_PRECISION_HINT`` and checks that the plugin kept it: a hint it
silently ignored would be a false precision claim.

This is OpenVINO's one runner core: :class:`OpenVINORunner` (compile once, one locked
infer request, batched logits) is what the OpenVINO backend wraps and what the
precision step's guards run (``calibration.sensitivity.openvino_logits``,
``calibration.bf16.openvino_bf16_runner``); nothing else compiles a model.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from dacovid_export.core.deps import require
from dacovid_export.core.errors import (
    IncompatibleArtifactError,
    UserInputError,
    first_line,
)
from dacovid_export.core.validate import check_int

__all__ = ["INFERENCE_PRECISIONS", "openvino_core", "cpu_supports_bf16", "compile_for_cpu", "infer_logits", "check_openvino_options", "OpenVINORunner"]

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


def check_openvino_options(inference_precision: str | None, threads: int | None) -> None:
    """Raise :class:`UserInputError` quoting a precision hint OpenVINO is not given here, or a bad thread count."""
    if inference_precision is not None and inference_precision not in INFERENCE_PRECISIONS:
        raise UserInputError(f"inference_precision={inference_precision!r}: choose one of {', '.join(INFERENCE_PRECISIONS)}")
    if threads is not None:
        check_int("threads", threads, 1, why=", or None for OpenVINO's default")


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
    check_openvino_options(inference_precision, threads)
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


class OpenVINORunner:
    """One ONNX file compiled once for the CPU plugin at an explicit ``inference_precision``, and run.

    ``threads``, ``performance_hint`` and ``core`` as for :func:`compile_for_cpu`. :meth:`run`
    computes one batch (serialised by a lock: one infer request); :meth:`logits` any number
    of images in chunks of ``batch``. Whether the CPU has BF16 is the caller's check, so the
    refusal can say what that caller's user should do.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        inference_precision: str = "fp32",
        threads: int | None = None,
        performance_hint: str | None = None,
        core: tuple[Any, Any] | None = None,
    ) -> None:
        self.inference_precision = inference_precision
        self.threads = threads
        self._compiled: Any = compile_for_cpu(
            path, inference_precision=inference_precision, threads=threads, performance_hint=performance_hint, core=core
        )
        self._request: Any = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    @property
    def compiled(self) -> Any:
        """The ``openvino.CompiledModel`` (its properties say what the plugin actually set)."""
        return self._compiled

    @property
    def outputs(self) -> int:
        """How many outputs the compiled model has (the project's models have one: the logits)."""
        return len(self._compiled.outputs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``N x K`` output 0 on a float32 ``N x 3 x S x S`` batch."""
        with self._lock:
            return infer_logits(self._request, batch)

    def logits(self, images: np.ndarray, *, batch: int = 16) -> np.ndarray:
        """Output 0 for any number of images, ``batch`` at a time (the model keeps its dynamic batch)."""
        return np.concatenate([self.run(images[i : i + batch]) for i in range(0, len(images), batch)])

    def close(self) -> None:
        """Drop the infer request and the compiled model; idempotent."""
        self._request = None
        self._compiled = None

"""ONNX Runtime sessions made one way: explicit threads and graph optimisation, one-line errors.

The backend, the export self-checks and the precision step's guard all run ONNX
models in ONNX Runtime; this is ONNX Runtime's one runner core: the one place a
session is created (:func:`open_session`) and run on a batch (:func:`run_session`)
or on any number of images (:func:`session_logits`), so the options that can
change numbers or speed are set explicitly and alike. Settings
follow ONNX Runtime's performance-tuning guide: all graph optimisations,
sequential execution, intra-op threads = physical cores (ORT's own default
when the count is 0), one inter-op thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.core.deps import require
from dacovid_export.core.errors import (
    CheckFailedError,
    DacovidError,
    UserInputError,
    first_line,
)
from dacovid_export.core.validate import check_int

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["GRAPH_OPTIMIZATIONS", "ort_errors", "check_session_options", "session_options", "open_session", "run_session", "session_logits"]

# our names -> ONNX Runtime's GraphOptimizationLevel members
GRAPH_OPTIMIZATIONS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """ORT's own exception classes (they derive from Exception directly) plus the usual OS/runtime ones."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented", "RuntimeException", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError, ValueError, OSError)


def check_session_options(intra_op_threads: int | None, graph_optimization: str) -> None:
    """Raise :class:`UserInputError` quoting a bad thread count or optimisation level (before any file is read)."""
    if intra_op_threads is not None:
        check_int("intra_op_threads", intra_op_threads, 1, why=", or None for the physical core count")
    if graph_optimization not in GRAPH_OPTIMIZATIONS:
        raise UserInputError(f"graph_optimization={graph_optimization!r}: use one of {', '.join(GRAPH_OPTIMIZATIONS)}")


def session_options(ort: Any, *, intra_op_threads: int | None = None, graph_optimization: str = "all") -> Any:
    """Validated ``SessionOptions``; ``intra_op_threads=None`` means one thread per physical core."""
    check_session_options(intra_op_threads, graph_optimization)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATIONS[graph_optimization])
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or 0  # 0 = ORT's default: one per physical core, pinned
    options.inter_op_num_threads = 1  # sequential execution uses none; say so rather than leave ORT's default
    options.log_severity_level = 3  # errors only: warnings are about ORT's internals (inserted casts in FP16 graphs)
    return options


def open_session(
    model: "str | os.PathLike[str] | bytes",
    *,
    purpose: str,
    providers: Sequence[Any] = ("CPUExecutionProvider",),
    intra_op_threads: int | None = None,
    graph_optimization: str = "all",
    error: type[DacovidError] = UserInputError,
) -> "onnxruntime.InferenceSession":
    """A session on ``model`` (a path or serialized bytes); CPU provider unless ``providers`` says otherwise.

    ``purpose`` finishes "onnxruntime is needed to ..."; a model ORT cannot load
    raises ``error`` (the caller's verdict: bad input, or a failed check) in one line.
    """
    ort = require("onnxruntime", purpose)
    options = session_options(ort, intra_op_threads=intra_op_threads, graph_optimization=graph_optimization)
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=list(providers))
    except ort_errors(ort) as exc:
        what = "the model" if isinstance(model, bytes) else repr(source)
        raise error(f"ONNX Runtime could not load {what}: {first_line(exc)}") from exc


def run_session(
    session: "onnxruntime.InferenceSession",
    batch: np.ndarray,
    *,
    error: type[DacovidError] = CheckFailedError,
    input_name: str | None = None,
    output_name: str | None = None,
    input_dtype: Any = np.float32,
) -> np.ndarray:
    """float32 ``N x K`` output of a model on a float32 ``N x 3 x S x S`` batch.

    ``input_name``/``output_name``: which input is fed and which output returned (None: the
    first); ``input_dtype``: what the batch is cast to (float16 for a model with FP16 I/O).
    A failure of ONNX Runtime raises ``error`` in one line.
    """
    import onnxruntime as ort

    name = input_name if input_name is not None else session.get_inputs()[0].name
    wanted = None if output_name is None else [output_name]
    try:
        (logits, *_) = session.run(wanted, {name: np.ascontiguousarray(batch, dtype=input_dtype)})
    except ort_errors(ort) as exc:
        raise error(f"ONNX Runtime failed on a batch of shape {batch.shape}: {first_line(exc)}") from exc
    return np.asarray(logits, dtype=np.float32)


def session_logits(
    session: "onnxruntime.InferenceSession", images: np.ndarray, *, batch: int = 16, error: type[DacovidError] = CheckFailedError
) -> np.ndarray:
    """:func:`run_session` over any number of images: ``batch`` at a time, or the model's static batch size
    (the last chunk padded with its last image, the padding rows dropped)."""
    shape = session.get_inputs()[0].shape
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    step = fixed or batch
    out = []
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        real = len(chunk)
        if fixed is not None and real < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - real, axis=0)])
        out.append(run_session(session, chunk, error=error)[:real])
    return np.concatenate(out)

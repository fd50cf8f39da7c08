"""TensorRT and TensorRT-RTX as this project uses them; neither library is imported until a function needs it.

:mod:`.library` (the names callers import, one job per module behind them:
:mod:`.versions`, the one module that imports either library, and its version policy;
:mod:`.runtimes`, the runtime choice; :mod:`.gpu`; :mod:`.logger`; :mod:`.progress`), :mod:`.targets` (the
TensorRT facts: runtimes, TensorRT-RTX targets, the hardware-compatibility floor; import-free, so lower stages
may quote it), :mod:`.compat` (where an engine may load), :mod:`.network` (the ONNX parser: parse,
one-line parser failures, the precision the parser gave each node) and
:mod:`.onnx_operators` (TensorRT's documented operator list and the
operator-support check). Building engines is :mod:`dacovid_export.engine`.

This face re-exports the facts of :mod:`.targets` only: artifacts/ (below trt/)
imports them, and importing ``dacovid_export.trt.targets`` runs this file first,
so it must import nothing else; the functions are in :mod:`.library`.
"""

from dacovid_export.trt.targets import (
    HARDWARE_COMPATIBLE_MIN_CC,
    RTX_DEFAULT_TARGETS,
    RTX_TARGETS,
    RUNTIMES,
)

__all__ = ["RUNTIMES", "RTX_TARGETS", "RTX_DEFAULT_TARGETS", "HARDWARE_COMPATIBLE_MIN_CC"]

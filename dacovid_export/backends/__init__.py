"""Inference backends behind one interface: PyTorch, ONNX Runtime, OpenVINO (CPU), TensorRT.

:mod:`.base` (the :class:`~.base.Backend` that owns the lifetime, input and
output checks and batch chunking, and whose class attributes say what a backend is),
:mod:`.staging` (pinned host and device buffers for CUDA backends), one module per
runtime (the CPU ones wrap the runner cores in ``core/``), :mod:`.options`
(:class:`~.options.BackendOptions`, what ``open_backend`` passes on), :mod:`.registry`
(the one table of backends, :data:`~.registry.BACKENDS`, and
:func:`~.registry.open_backend`: which backend for which artifact and device), and
:mod:`.triton_endpoint`, the client of a served model (encoded images in, answers out).
Importing this package imports no runtime.
"""

from dacovid_export.backends.base import Backend
from dacovid_export.backends.options import BackendOptions
from dacovid_export.backends.registry import BACKEND_NAMES, BACKENDS, open_backend

__all__ = ["Backend", "BackendOptions", "BACKENDS", "BACKEND_NAMES", "open_backend"]

"""TensorRT and TensorRT-RTX as the package meets them: the names callers import, one job per module behind them.

Import and version policy: :mod:`.versions` (the project's only imports of either library); the runtime
choice: :mod:`.runtimes`; GPU facts: :mod:`.gpu`; the logger: :mod:`.logger`; build progress: :mod:`.progress`.
Every public name of those modules is importable from here.

Everything else in the package gets the ``tensorrt`` (or ``tensorrt_rtx``)
module object from :func:`import_runtime` and never imports either itself, so
``import dacovid_export`` and every ``--help`` work without them, and the
version policy below lives in one module (:mod:`.versions`).

Two runtimes. ``tensorrt`` (TensorRT 10.8+/11.x) builds on the GPU that will run
the engine, so building needs a GPU; it serves every NVIDIA GPU from Turing to
data-centre parts (H100/H200). ``tensorrt-rtx`` (TensorRT for RTX, 1.1+) builds
ahead of time on any machine, GPU or not, for a list of target compute
capabilities, and compiles its kernels just in time on the user's RTX GPU
(Ampere and newer; no SM 9.0 target, and no FP32 GEMM on Turing). Both share
the Python API this project uses; the differences are handled where they occur
and checked with :func:`is_rtx`.

Version policy. Supported: TensorRT 10.x from :data:`MIN_TRT_VERSION` (10.8) and
11.x. Every Python API used (``Builder.create_network``, ``OnnxParser.parse_from_file``
and ``IParserError.node_name/node_operator``, ``IBuilderConfig.set_memory_pool_limit``,
``builder_optimization_level``, ``hardware_compatibility_level``, ``progress_monitor``,
timing caches, ``build_serialized_network``, ``Runtime.deserialize_cuda_engine``,
``set_input_shape``/``set_tensor_address``/``execute_async_v3``) already exists in
10.0; 10.8 is the floor because 10.7 taught the ONNX parser mixed-precision
BatchNormalization in strongly typed mode and 10.8 fixed wrong results with
optimization profiles (TensorRT OSS changelog), both on the path this project takes.

Strong typing. On 10.x the network is created with the opt-in
``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; 11.x networks are always
strongly typed and the flag is kept only as a deprecated no-op, so nothing is
passed there. No precision builder flag is ever set (11.x removed them).
"""

from __future__ import annotations

from dacovid_export.core.versions import parse_version  # noqa: F401  (importable from here, as before)
from dacovid_export.trt.gpu import GpuInfo, cuda_visible, gpu_info
from dacovid_export.trt.logger import TrtLog, said_of, trt_logger
from dacovid_export.trt.progress import make_progress_monitor
from dacovid_export.trt.runtimes import (
    RUNTIME_CHOICES,
    installed_runtimes,
    resolve_runtime,
)
from dacovid_export.trt.versions import (
    MIN_RTX_VERSION,
    MIN_TRT_VERSION,
    RTX_INSTALL_HINT,
    SUPPORTED_TRT_MAJORS,
    TRT_INSTALL_HINT,
    check_tensorrt_version,
    engine_invalidity,
    engine_io_names,
    import_runtime,
    import_tensorrt,
    import_tensorrt_rtx,
    install_hint,
    installed_tensorrt_version,
    is_rtx,
    network_creation_flags,
    runtime_of,
    tensorrt_version,
)

__all__ = [
    "RUNTIME_CHOICES",
    "MIN_RTX_VERSION",
    "RTX_INSTALL_HINT",
    "import_runtime",
    "import_tensorrt_rtx",
    "installed_runtimes",
    "resolve_runtime",
    "runtime_of",
    "is_rtx",
    "install_hint",
    "cuda_visible",
    "engine_invalidity",
    "MIN_TRT_VERSION",
    "SUPPORTED_TRT_MAJORS",
    "TRT_INSTALL_HINT",
    "GpuInfo",
    "import_tensorrt",
    "tensorrt_version",
    "installed_tensorrt_version",
    "check_tensorrt_version",
    "network_creation_flags",
    "gpu_info",
    "TrtLog",
    "said_of",
    "engine_io_names",
    "trt_logger",
    "make_progress_monitor",
]

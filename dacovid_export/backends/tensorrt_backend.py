"""TensorRT backend: runs a serialized TensorRT or TensorRT-RTX engine built by ``dacovid-export trt``.

Loading checks the engine's sidecar first (TensorRT version and GPU compute
capability, :func:`dacovid_export.trt.compat.check_engine_compatibility`),
then the engine's bytes against the sidecar's sha256, then deserializes it
(``Runtime.deserialize_cuda_engine``). Buffers are torch CUDA tensors sized
for the profile's maximum batch, bound once with ``set_tensor_address``; a
call sets the batch with ``set_input_shape`` and enqueues with
``execute_async_v3`` on this backend's own ``torch.cuda.Stream``.

TensorRT-RTX engines (sidecar ``"runtime": "tensorrt-rtx"``) are checked with
``Runtime.get_engine_validity`` before deserializing, and compile their kernels
just in time on the RTX GPU. Those kernels are kept in a runtime cache,
``<engine>.runtime-cache`` next to the engine by default: loaded when present
and valid for this GPU and library, written back atomically on :meth:`close`,
so the next process starts without recompiling.

Thread safety: one backend owns one execution context, one stream and one set
of buffers, so it is not thread-safe. Use one backend per thread (each
deserializes its own copy of the engine), or serialize calls with a lock.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.engine_metadata import engine_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.core.commands import rebuild_command
from dacovid_export.core.errors import (
    DacovidError,
    IncompatibleArtifactError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.fileio import atomic_write_bytes
from dacovid_export.trt.compat import check_engine_compatibility
from dacovid_export.trt.library import (
    cuda_visible,
    engine_invalidity,
    engine_io_names,
    gpu_info,
    import_runtime,
    is_rtx,
    trt_logger,
)

if TYPE_CHECKING:
    import torch

__all__ = ["TensorRTBackend", "engine_unavailable_reason"]


def engine_unavailable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why the engine at ``path`` cannot run here (its runtime is not installed, no GPU), or ``None``.

    A damaged or missing sidecar is not a reason to skip: it raises
    :class:`UserInputError` like every bad input.
    """

    from dacovid_export.engine.sidecar import read_engine_sidecar  # engine/ pulls torch: served stubs lack it

    meta = read_engine_sidecar(path)
    try:
        import_runtime(meta.runtime)
    except MissingDependencyError as exc:
        return str(exc)
    if not cuda_visible():
        gpus = "an NVIDIA RTX GPU" if meta.runtime == "tensorrt-rtx" else f"an NVIDIA GPU like its build GPU ({meta.gpu_name})"
        return f"{meta.runtime_label} engine: it runs on {gpus}, and no CUDA GPU is visible here"
    return None


class TensorRTBackend(Backend):
    """Run a dacovid-export TensorRT engine (``.engine``/``.plan``) on a CUDA GPU.

    ``device``: ``"cuda"`` or ``"cuda:N"``. Raises :class:`MissingDependencyError`
    without TensorRT or a GPU, :class:`IncompatibleArtifactError` when the engine
    was built for another TensorRT version or GPU architecture (the message holds
    the command that rebuilds it), :class:`UserInputError` for a missing or
    mismatched sidecar. ``runtime_cache`` (TensorRT-RTX only): the file that
    keeps JIT-compiled kernels; ``None``: ``<engine>.runtime-cache``; ``False``: none.
    """

    name = "tensorrt"
    label = "TensorRT"
    kind = "engine"
    devices = "cuda"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cuda",
        runtime_cache: "str | os.PathLike[str] | None | bool" = None,
    ) -> None:
        import torch

        from dacovid_export.engine.sidecar import read_engine_sidecar

        meta = read_engine_sidecar(path)
        trt = import_runtime(meta.runtime)
        if meta.runtime == "tensorrt-rtx" and not cuda_visible():
            raise MissingDependencyError(
                f"{str(path)!r} is a TensorRT-RTX engine for compute capabilities "
                f"{', '.join(meta.compute_capabilities)}: it runs on an NVIDIA RTX GPU, and no CUDA GPU is visible here"
            )
        gpu = gpu_info(device)
        check_engine_compatibility(
            meta,
            trt_version=str(trt.__version__),
            compute_capability=gpu.compute_capability,
            gpu_name=gpu.name,
            runtime=meta.runtime,
        )
        super().__init__(engine_artifact_info(meta, path), device)
        with self._opening():
            self._load(path, torch, trt, meta, gpu.index, runtime_cache)

    def _load(self, path: "str | os.PathLike[str]", torch: Any, trt: Any, meta: Any, gpu_index: int, runtime_cache: object) -> None:
        """Check the engine's bytes, deserialize it, create its context and bind the staging buffers."""

        self._torch = torch
        self._trt = trt
        self._meta = meta
        self._device = torch.device("cuda", gpu_index)

        blob = Path(path).read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.engine_sha256:
            raise UserInputError(
                f"engine {str(path)!r} does not match the sha256 in its sidecar: it was changed or damaged after "
                f"the build; rebuild with: {rebuild_command(meta, path)}"
            )

        logger, self._log = trt_logger(trt)
        self._log.take_errors()
        self._rtx = is_rtx(trt)
        self._cache_path: Path | None = None
        self._runtime_config = None
        with torch.cuda.device(self._device):
            self._runtime = trt.Runtime(logger)
            if self._rtx:
                self._check_rtx_validity(blob, path)
            self._engine = self._runtime.deserialize_cuda_engine(blob)
            del blob
            if self._engine is None:
                raise IncompatibleArtifactError(
                    f"TensorRT {trt.__version__} could not deserialize {str(path)!r} ({self._log.take_said()}); "
                    f"rebuild it here with: {rebuild_command(meta, path)}"
                )
            self._check_io()
            if self._rtx:
                self._context = self._engine.create_execution_context(self._rtx_runtime_config(path, runtime_cache))
            else:
                self._context = self._engine.create_execution_context()
            if self._context is None:
                raise DacovidError(
                    f"TensorRT could not create an execution context for {str(path)!r} ({self._log.take_said()}): "
                    "usually too little free GPU memory; close other GPU programs or rebuild with a smaller --max-batch"
                )
            self._allocate()

    # ------------------------------------------------------------------ setup

    def _check_rtx_validity(self, blob: bytes, path: "str | os.PathLike[str]") -> None:
        """TensorRT-RTX's own header check (library version, compute capability, driver) before deserializing."""

        trt = self._trt
        validity, diagnostics = self._runtime.get_engine_validity(blob)
        if validity != trt.EngineValidity.INVALID:
            return
        raise IncompatibleArtifactError(
            f"TensorRT-RTX {trt.__version__} says {str(path)!r} is not valid on this GPU "
            f"({engine_invalidity(trt, diagnostics)}); rebuild it with: {rebuild_command(self._meta, path)}"
        )

    def _rtx_runtime_config(self, path: "str | os.PathLike[str]", runtime_cache: object) -> object:
        """A runtime config whose runtime cache is loaded from (and later saved to) the cache file."""
        import warnings

        config = self._engine.create_runtime_config()
        if runtime_cache is False:
            self._runtime_config = config
            return config
        cache_path = Path(runtime_cache) if isinstance(runtime_cache, (str, os.PathLike)) else Path(f"{path}.runtime-cache")
        cache = config.create_runtime_cache()
        if cache_path.is_file():
            try:
                data = cache_path.read_bytes()
            except OSError as exc:
                raise UserInputError(f"runtime cache {str(cache_path)!r} is unreadable: {exc}") from exc
            if not cache.deserialize(data):
                # recorded on another GPU, driver or TensorRT-RTX: kernels are compiled again and the file replaced
                warnings.warn(
                    f"runtime cache {str(cache_path)!r} does not fit this GPU or TensorRT-RTX version; "
                    "kernels are compiled again and the cache rewritten",
                    stacklevel=3,
                )
        if not config.set_runtime_cache(cache):
            raise DacovidError(f"TensorRT-RTX refused the runtime cache for {str(path)!r}: {self._log.take_said()}")
        self._runtime_config, self._cache_path, self._runtime_cache = config, cache_path, cache
        return config

    def _save_runtime_cache(self) -> None:
        """Write the JIT kernels back (atomically); an unwritable folder costs only the next start's compile time."""
        import warnings

        if self._cache_path is None:
            return
        data = memoryview(self._runtime_cache.serialize()).tobytes()
        try:
            atomic_write_bytes(self._cache_path, data)
        except OSError as exc:
            warnings.warn(f"could not save the runtime cache {str(self._cache_path)!r}: {exc}", stacklevel=3)

    def _check_io(self) -> None:
        trt, engine, info = self._trt, self._engine, self.info
        inputs, outputs = engine_io_names(trt, engine)
        if inputs != [info.input_name] or outputs != [info.output_name]:
            raise UserInputError(
                f"{info.path}: engine has inputs {inputs} and outputs {outputs} but its sidecar names "
                f"[{info.input_name!r}] and [{info.output_name!r}]: the sidecar belongs to another engine"
            )

    def _torch_dtype(self, name: str) -> "torch.dtype":
        dtype = self._engine.get_tensor_dtype(name)
        if dtype == self._trt.DataType.FLOAT:
            return self._torch.float32
        if dtype == self._trt.DataType.HALF:
            return self._torch.float16
        raise UserInputError(f"{self.info.path}: tensor {name!r} is {dtype}; this backend supports float32/float16 I/O")

    def _allocate(self) -> None:
        info = self.info
        # max-batch buffers: a smaller batch uses their first rows, so addresses are bound once
        staging = self._start_staging(
            self._torch,
            self._device,
            in_dtype=self._torch_dtype(info.input_name),
            out_dtype=self._torch_dtype(info.output_name),
            rows=int(info.max_batch or 1),
        )
        whole = staging.buffers(int(info.max_batch or 1))
        for name, tensor in ((info.input_name, whole.dev_in), (info.output_name, whole.dev_out)):
            if not self._context.set_tensor_address(name, tensor.data_ptr()):
                raise DacovidError(f"TensorRT refused the buffer address for {name!r}: {self._log.take_said()}")
        self._shape_n: int | None = None

    # ---------------------------------------------------------------- running

    def _execute(self, n: int) -> "torch.Tensor":
        """Enqueue the engine on the staged batch; returns before the GPU finishes."""
        s = self.info.image_size
        with self._torch.cuda.device(self._device):
            if n != self._shape_n:
                if not self._context.set_input_shape(self.info.input_name, (n, 3, s, s)):
                    raise UserInputError(f"{self.info.path}: TensorRT rejected batch shape {(n, 3, s, s)}: {self._log.take_said()}")
                self._shape_n = n
            if not self._context.execute_async_v3(self.cuda_stream.cuda_stream):
                raise DacovidError(f"TensorRT failed to enqueue {self.info.path} on batch {n}: {self._log.take_said()}")
        return self._staging.buffers(n).dev_out

    def describe(self) -> str:
        return (
            f"tensorrt/{self.device} {self.info.precision} {self._meta.runtime_label} "
            f"batch {self.info.min_batch}..{self.info.max_batch} {self.info.path}"
        )

    # ---------------------------------------------------------------- lifetime

    def _release(self) -> None:
        """Save the RTX kernels, then free the context, engine and runtime (the base frees the buffers)."""
        if self._rtx:
            self._save_runtime_cache()
        # context before its runtime config and engine, engine before runtime: each depends on the next
        for attr in ("_context", "_runtime_config", "_runtime_cache", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)

"""ONNX Runtime backend: runs any of the project's ONNX models (FP32, mixed FP16, Q/DQ INT8).

Sessions come from :func:`dacovid_export.core.onnxruntime_session.open_session`
and the host path runs through its :func:`~dacovid_export.core.onnxruntime_session.run_session`
(ONNX Runtime's one runner core, which the precision step's guards run too: its
options follow ONNX Runtime's performance-tuning guide, its errors are one line).

On CUDA the batch goes through I/O binding: the input and output live in
device buffers bound to the session, and ORT computes on a ``torch.cuda.Stream``
handed to the CUDA execution provider as ``user_compute_stream``. So the timing
hooks are the base class's CUDA staging (host-to-device copy on that stream,
device-to-host copy) around ``run_with_iobinding`` without the end-of-run
synchronisation; the bench can record CUDA events on :attr:`cuda_stream`. The
device buffers are torch tensors (torch is a hard dependency of this project)
bound by pointer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.backends.torch_backend import parse_device
from dacovid_export.core.cpu import physical_cores
from dacovid_export.core.deps import require
from dacovid_export.core.errors import (
    IncompatibleArtifactError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.onnxruntime_session import check_session_options, open_session, run_session

if TYPE_CHECKING:
    import torch

__all__ = ["OnnxRuntimeBackend", "ORT_PROVIDERS"]

# our short names -> ONNX Runtime execution provider names
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# ONNX tensor type strings -> numpy dtypes the backend can feed or read
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxRuntimeBackend(Backend):
    """Run an ONNX model with ONNX Runtime.

    ``provider``: ``"cpu"``, ``"cuda"`` or ``"tensorrt"`` (ORT's TensorRT execution
    provider, which builds its own engine when the session starts: minutes).
    ``None`` picks ``"cpu"`` on the CPU and ``"cuda"`` on a GPU; the TensorRT
    provider is never picked implicitly because its engine build is slow and it
    needs TensorRT's libraries (use the ``tensorrt`` backend for this project's
    prebuilt engines). A provider ORT cannot start is an error, never a silent
    fall-back to the CPU.

    ``info``: the artifact's metadata when the caller already has it (saves a re-read).

    ``run`` is safe to call from several threads on the CPU (ORT sessions are);
    the CUDA timing hooks share one set of buffers and are not.
    """

    name = "onnxruntime"
    label = "ONNX Runtime"
    kind = "onnx"
    thread_option = "intra_op_threads"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        provider: str | None = None,
        intra_op_threads: int | None = None,
        graph_optimization: str = "all",
        info: ArtifactInfo | None = None,
    ) -> None:
        require("onnxruntime", "run ONNX models")
        device = parse_device(device)
        provider = _choose_provider(device, provider)
        check_session_options(intra_op_threads, graph_optimization)
        info = info if info is not None else read_artifact_info(path)
        if info.kind != "onnx":
            raise UserInputError(f"{str(path)!r} is a {info.kind}, not an ONNX model: the onnxruntime backend runs .onnx files")
        if info.precision == "bf16":
            # refused rather than run as FP32: every report keys on the model's precision, and a "bf16" row computed
            # in FP32 would be a false claim; the FP32 answers are the FP32 export's, which stays the one to run for them
            raise UserInputError(
                f"{str(path)!r} is marked for BF16 execution, which ONNX Runtime does not do: run it with backend "
                "'openvino' (or 'auto') on a CPU with BF16, or run the FP32 model it was made from for FP32 answers"
            )
        super().__init__(info, device)
        self.provider = provider
        self.intra_op_threads = intra_op_threads

        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            import torch

            self._torch = torch
            torch_device = torch.device(device)
            self._device_id = torch_device.index or 0
            # the stream exists before the session: ORT computes on it (user_compute_stream)
            staging = self._start_staging(torch, torch_device, in_dtype=torch.float32, out_dtype=torch.float32)
            gpu_options = {"device_id": str(self._device_id), "user_compute_stream": str(staging.stream.cuda_stream)}
            providers = [("CUDAExecutionProvider", gpu_options), "CPUExecutionProvider"]
            if provider == "tensorrt":
                providers.insert(0, ("TensorrtExecutionProvider", dict(gpu_options)))
        self._session = open_session(
            path,
            purpose="run ONNX models",
            providers=providers,
            intra_op_threads=intra_op_threads,
            graph_optimization=graph_optimization,
        )
        active = self._session.get_providers()
        if active[0] != ORT_PROVIDERS[provider]:
            raise MissingDependencyError(
                f"ONNX Runtime could not start {ORT_PROVIDERS[provider]} for {str(path)!r} (active: {', '.join(active)}); "
                "install onnxruntime-gpu matching your CUDA and cuDNN"
                + (" and TensorRT's libraries" if provider == "tensorrt" else "")
                + ", or use --device cpu"
            )
        self._input_name, self._input_dtype = self._pick_io(self._session.get_inputs(), info.input_name, "input")
        self._output_name, self._output_dtype = self._pick_io(self._session.get_outputs(), info.output_name, "output")

        if device.startswith("cuda"):
            # the model's own I/O dtypes (float16 I/O in some FP16 exports), known only now
            staging.set_dtypes(self._torch_dtype(self._input_dtype), self._torch_dtype(self._output_dtype))
            self._binding = self._session.io_binding()
            # no cudaStreamSynchronize at the end of run: execute_staged stays asynchronous
            import onnxruntime as ort

            self._async_run = ort.RunOptions()
            self._async_run.add_run_config_entry("disable_synchronize_execution_providers", "1")
            self._bound_n: int | None = None

    def _pick_io(self, args: list[Any], wanted: str, what: str) -> tuple[str, Any]:
        names = [a.name for a in args]
        if wanted in names:
            arg = args[names.index(wanted)]
        elif len(args) == 1:
            arg = args[0]  # metadata names are advisory; a one-input model is unambiguous
        else:
            raise IncompatibleArtifactError(
                f"{self.info.path}: no {what} named {wanted!r} among {names}; is this a DA-COVID Net export?"
            )
        if arg.type not in _ONNX_TYPES:
            raise IncompatibleArtifactError(
                f"{self.info.path}: {what} {arg.name!r} has type {arg.type}; expected float32 or float16"
            )
        return arg.name, _ONNX_TYPES[arg.type]

    def describe(self) -> str:
        threads = self.intra_op_threads or "physical cores"
        return f"onnxruntime/{self.device} ({ORT_PROVIDERS[self.provider]}, {threads} threads) {self.info.precision} {self.info.path}"

    def threads_used(self, requested: int | None) -> int | None:
        # None: ORT's default, one thread per physical core
        return self.intra_op_threads if self.intra_op_threads else physical_cores()

    # ------------------------------------------------------------------ running

    def _run_host(self, batch: np.ndarray) -> np.ndarray:
        # float32 I/O is the project's convention even for FP16/INT8 models; cast if a model differs
        out = run_session(
            self._session, batch, input_name=self._input_name, output_name=self._output_name, input_dtype=self._input_dtype
        )  # N x 3 x S x S -> N x K
        return self._check_output(out, len(batch))

    def _check_output(self, out: np.ndarray, n: int) -> np.ndarray:
        if out.shape != (n, self.info.num_classes):
            raise IncompatibleArtifactError(
                f"{self.info.path}: output of shape {out.shape}, expected ({n}, {self.info.num_classes}) "
                f"for classes {list(self.info.class_names)}"
            )
        return out.astype(np.float32, copy=False)

    # --------------------------------------------------------- CUDA timing hooks

    def _torch_dtype(self, dtype: Any) -> "torch.dtype":
        return {np.float32: self._torch.float32, np.float16: self._torch.float16, np.float64: self._torch.float64}[dtype]

    def _execute(self, n: int) -> "torch.Tensor":
        buffers = self._staging.buffers(n)
        if self._bound_n != n:
            dev_in, dev_out = buffers.dev_in, buffers.dev_out
            self._binding.bind_input(
                self._input_name, "cuda", self._device_id, self._input_dtype, tuple(dev_in.shape), dev_in.data_ptr()
            )
            self._binding.bind_output(
                self._output_name, "cuda", self._device_id, self._output_dtype, tuple(dev_out.shape), dev_out.data_ptr()
            )
            self._bound_n = n
        # ORT computes on the staging stream (user_compute_stream), after the staged copy
        self._session.run_with_iobinding(self._binding, self._async_run)
        return buffers.dev_out

    # ---------------------------------------------------------------- lifetime

    def _release(self) -> None:
        if self._staging is not None and hasattr(self, "_binding"):
            self._binding.clear_binding_inputs()
            self._binding.clear_binding_outputs()
        # dropping the session frees its arena (device memory on CUDA)
        self._session = None


def _choose_provider(device: str, provider: str | None) -> str:
    if provider is None:
        return "cuda" if device.startswith("cuda") else "cpu"
    if provider not in ORT_PROVIDERS:
        raise UserInputError(f"provider={provider!r}: use one of {', '.join(ORT_PROVIDERS)} (or None to pick by device)")
    on_gpu = device.startswith("cuda")
    if on_gpu and provider == "cpu":
        raise UserInputError(f"provider='cpu' contradicts device={device!r}: use device='cpu' for the CPU provider")
    if not on_gpu and provider != "cpu":
        raise UserInputError(f"provider={provider!r} runs on a GPU: use device='cuda'")
    return provider

"""PyTorch backend: runs a checkpoint; the reference for parity and the eager baseline for the bench.

On a CPU it is a plain ``model(x)`` under ``torch.inference_mode``. On CUDA the
base class's staging (a ``torch.cuda.Stream``, pinned host buffers and device
buffers per batch size) lets the bench time host-to-device, compute and
device-to-host separately with CUDA events on :attr:`cuda_stream`. Speed options (autocast
precision, channels-last, CUDA graphs, ``torch.compile``) follow the PyTorch
documentation; the defaults are strict FP32 so the reference stays exact.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.backends.base import Backend
from dacovid_export.core.errors import MissingDependencyError, UserInputError

if TYPE_CHECKING:
    import torch

__all__ = ["TorchBackend", "TORCH_PRECISIONS", "check_torch_options", "parse_device"]

TORCH_PRECISIONS = ("fp32", "fp16", "bf16")


def parse_device(device: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``, validated; CUDA must be usable."""
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or _is_cuda_index(device)):
        raise UserInputError(f"device={device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError(
                f"device={device!r} but CUDA is not available here (torch.cuda.is_available() is False): "
                "use --device cpu, or run on a machine with an NVIDIA GPU and driver"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserInputError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


class TorchBackend(Backend):
    """Run a dacovid-export checkpoint with PyTorch.

    Options (CUDA unless noted):

    - ``precision``: ``"fp32"`` (default, no autocast), ``"fp16"`` or ``"bf16"``
      autocast. On the CPU only ``"bf16"`` is accepted (CPU autocast has no
      useful FP16 path).
    - ``channels_last``: NHWC memory format for the model and its input
      (also on the CPU, where oneDNN benefits from it).
    - ``cuda_graphs``: capture the forward pass once per batch size with
      ``torch.cuda.graph`` and replay it; inputs go through a static device buffer.
    - ``compile``: ``torch.compile`` (Inductor). With ``cuda_graphs`` as well it
      uses ``mode="reduce-overhead"`` (Inductor's own CUDA graphs) instead of the
      manual capture, because the two captures must not nest. Allowed on the CPU.
    - ``tf32``: let cuDNN convolutions and matmuls use TF32. Off by default so
      "fp32" means IEEE FP32 (PyTorch's own default runs convolutions in TF32).

    Not thread-safe: one instance owns one set of buffers and one stream.
    """

    name = "torch"
    label = "PyTorch"
    kind = "checkpoint"
    precision_option = "precision"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        cuda_graphs: bool = False,
        compile: bool = False,
        tf32: bool = False,
    ) -> None:
        import torch

        from dacovid_export.artifacts.read import checkpoint_info
        from dacovid_export.model import load_checkpoint

        device = parse_device(device)
        _validate_options(device, precision, channels_last, cuda_graphs, compile, tf32)
        model, meta = load_checkpoint(path)
        super().__init__(checkpoint_info(meta), device)
        self.image_record = meta.image_record  # which images trained it (parity judges on the others)
        self._torch = torch
        self._autocast_precision = precision
        self._channels_last = channels_last
        self._cuda_graphs = cuda_graphs
        self._compile = compile
        self._tf32 = tf32
        self._torch_device = torch.device(device)

        model = model.to(self._torch_device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model
        self._module: Any = model
        if compile:
            # reduce-overhead = Inductor + its own CUDA graphs; dynamic=False: one
            # specialised graph per batch size, which is what a fixed-batch bench wants.
            mode = "reduce-overhead" if cuda_graphs else None
            self._module = torch.compile(model, mode=mode, dynamic=False)

        if self._torch_device.type == "cuda":
            # buffers per batch size: the bench runs one size, parity/Predictor a few
            self._start_staging(torch, self._torch_device, in_dtype=torch.float32, out_dtype=torch.float32)
            self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def threads_used(self, requested: int | None) -> int | None:
        return self._torch.get_num_threads()  # process-wide: the bench sets them around its runs

    @property
    def precision(self) -> str:
        """The precision the network actually computes in (autocast), not the checkpoint's."""
        return self._autocast_precision

    def describe(self) -> str:
        flags = [
            name
            for name, on in (
                ("channels_last", self._channels_last),
                ("cuda_graphs", self._cuda_graphs),
                ("compile", self._compile),
                ("tf32", self._tf32),
            )
            if on
        ]
        extra = f" [{', '.join(flags)}]" if flags else ""
        return f"torch/{self.device} autocast={self._autocast_precision}{extra} {self.info.path}"

    # ------------------------------------------------------------------ running

    def _run_host(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(self._torch.from_numpy(batch)).numpy()  # N x 3 x S x S -> N x K

    def _forward(self, x: "torch.Tensor") -> "torch.Tensor":
        """N x 3 x S x S -> float32 N x K on the same device."""
        torch = self._torch
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            if self._compile and self._cuda_graphs:
                # Inductor's CUDA graphs reuse output memory between calls; mark the
                # step and clone so a later call never overwrites a result still in use.
                torch.compiler.cudagraph_mark_step_begin()
                return self._module(x).float().clone()
            return self._module(x).float()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast_precision == "fp32":
            return contextlib.nullcontext()
        dtype = self._torch.float16 if self._autocast_precision == "fp16" else self._torch.bfloat16
        # CUDA graph capture needs the autocast weight-cast cache off (PyTorch CUDA graphs notes)
        return self._torch.autocast(device_type=self._torch_device.type, dtype=dtype, cache_enabled=not self._cuda_graphs)

    @contextlib.contextmanager
    def _cuda_numerics(self) -> Iterator[None]:
        """TF32 on/off and cuDNN autotuning for this backend's calls only, restored afterwards.

        Uses the fp32_precision API only: mixing it with the legacy allow_tf32
        flags makes PyTorch raise.
        """
        backends = self._torch.backends
        wanted = "tf32" if self._tf32 else "ieee"
        saved = (backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision, backends.cudnn.benchmark)
        backends.cudnn.conv.fp32_precision = wanted
        backends.cuda.matmul.fp32_precision = wanted
        backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels once
        try:
            yield
        finally:
            backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision, backends.cudnn.benchmark = saved

    # --------------------------------------------------------- CUDA timing hooks

    def _execute(self, n: int) -> "torch.Tensor":
        dev_in = self._staging.buffers(n).dev_in
        with self._torch.cuda.device(self._torch_device), self._torch.cuda.stream(self.cuda_stream), self._cuda_numerics():
            if self._cuda_graphs and not self._compile:
                graph, static_out = self._graph_for(n, dev_in)
                graph.replay()
                return static_out
            return self._forward(dev_in)

    def _graph_for(self, n: int, static_in: "torch.Tensor") -> tuple["torch.cuda.CUDAGraph", "torch.Tensor"]:
        """Capture (once per batch size) the forward pass reading the static buffer of batch size ``n``."""
        if n not in self._graphs:
            torch = self._torch
            stream = self.cuda_stream
            # Warm-up on the side stream before capture (cuDNN autotuning, lazy
            # initialisation), as the PyTorch CUDA graphs notes prescribe.
            for _ in range(3):
                self._forward(static_in)
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                static_out = self._forward(static_in)
            self._graphs[n] = (graph, static_out)
        return self._graphs[n]

    # ---------------------------------------------------------------- lifetime

    def _release(self) -> None:
        if self._torch_device.type == "cuda":
            self._graphs.clear()
        self._module = None
        self._model = None


def check_torch_options(precision: str | None, flags: dict[str, object]) -> None:
    """Raise :class:`UserInputError` quoting a bad autocast precision or a flag that is not a bool (any device)."""
    if precision is not None and precision not in TORCH_PRECISIONS:
        raise UserInputError(f"precision={precision!r}: use one of {', '.join(TORCH_PRECISIONS)}")
    for name, value in flags.items():
        if value is not None and not isinstance(value, bool):
            raise UserInputError(f"{name}={value!r}: must be True or False")


def _validate_options(
    device: str, precision: str, channels_last: bool, cuda_graphs: bool, compile: bool, tf32: bool
) -> None:
    check_torch_options(precision, {"channels_last": channels_last, "cuda_graphs": cuda_graphs, "compile": compile, "tf32": tf32})
    if device == "cpu":
        if precision == "fp16":
            raise UserInputError("precision='fp16' autocast needs device='cuda'; on the CPU use 'fp32' or 'bf16'")
        if cuda_graphs:
            raise UserInputError("cuda_graphs=True needs device='cuda': CUDA graphs do not exist on the CPU")
        if tf32:
            raise UserInputError("tf32=True needs device='cuda': TF32 is a GPU tensor-core format")

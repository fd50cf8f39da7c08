"""CUDA staging for the GPU backends: pinned host buffers, device buffers and one stream per backend.

The PyTorch, ONNX Runtime (CUDA) and TensorRT backends move a preprocessed batch
the same way: numpy -> pinned host buffer -> asynchronous host-to-device copy on
the backend's own ``torch.cuda.Stream``, and the logits back through a pinned
buffer. One copy of that logic lives here; :class:`~dacovid_export.backends.base.Backend`
owns an instance when it runs on CUDA. torch is passed in, never imported here,
so ``import dacovid_export.backends`` stays cheap.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["CudaBuffers", "CudaStaging"]


@dataclasses.dataclass(frozen=True)
class CudaBuffers:
    """The four buffers of one batch size ``n``: ``N x 3 x S x S`` in, ``N x K`` out."""

    host_in: "torch.Tensor"  # pinned
    dev_in: "torch.Tensor"
    dev_out: "torch.Tensor"
    host_out: "torch.Tensor"  # pinned


class CudaStaging:
    """Host/device buffers and the stream of one GPU backend.

    ``rows=None``: buffers per batch size, allocated on first use (a CUDA graph
    or an I/O binding keeps pointing at the buffer of its size). ``rows=R``: one
    allocation of ``R`` rows whose first ``n`` rows serve a batch of ``n``, so a
    runtime that binds addresses once (TensorRT) never rebinds.
    """

    def __init__(
        self,
        torch: Any,
        device: "torch.device",
        *,
        image_size: int,
        num_classes: int,
        in_dtype: "torch.dtype",
        out_dtype: "torch.dtype",
        rows: int | None = None,
    ) -> None:
        self._torch = torch
        self.device = device
        self.stream = torch.cuda.Stream(device=device)
        self._h2d_done = torch.cuda.Event()
        self._shape = (image_size, num_classes)
        self._dtypes = (in_dtype, out_dtype)
        self._rows = rows
        self._buffers: dict[int, CudaBuffers] = {}
        if rows is not None:
            self._buffers[rows] = self._allocate(rows)

    def set_dtypes(self, in_dtype: "torch.dtype", out_dtype: "torch.dtype") -> None:
        """Change the buffers' dtypes before the first batch (a runtime may learn its I/O types after the stream exists)."""
        if self._buffers:
            raise RuntimeError("set_dtypes() after buffers were allocated")
        self._dtypes = (in_dtype, out_dtype)

    def _allocate(self, n: int) -> CudaBuffers:
        torch, (s, k), (in_dtype, out_dtype) = self._torch, self._shape, self._dtypes
        return CudaBuffers(
            host_in=torch.empty((n, 3, s, s), dtype=in_dtype, pin_memory=True),
            dev_in=torch.empty((n, 3, s, s), dtype=in_dtype, device=self.device),
            dev_out=torch.empty((n, k), dtype=out_dtype, device=self.device),
            host_out=torch.empty((n, k), dtype=out_dtype, pin_memory=True),
        )

    def buffers(self, n: int) -> CudaBuffers:
        """The buffers of a batch of ``n`` (views of the first ``n`` rows when ``rows`` is fixed)."""
        if self._rows is not None:
            whole = self._buffers[self._rows]
            return CudaBuffers(whole.host_in[:n], whole.dev_in[:n], whole.dev_out[:n], whole.host_out[:n])
        if n not in self._buffers:
            self._buffers[n] = self._allocate(n)
        return self._buffers[n]

    def stage(self, batch: np.ndarray) -> int:
        """Queue the host-to-device copy of a checked float32 batch on :attr:`stream`; returns its size."""
        n = len(batch)
        buffers = self.buffers(n)
        # the previous asynchronous copy may still be reading the pinned buffer
        self._h2d_done.synchronize()
        buffers.host_in.copy_(self._torch.from_numpy(batch))  # casts to the input dtype (FP16 I/O)
        with self._torch.cuda.stream(self.stream):
            buffers.dev_in.copy_(buffers.host_in, non_blocking=True)
            self._h2d_done.record(self.stream)
        return n

    def fetch(self, dev_out: "torch.Tensor", n: int) -> np.ndarray:
        """Device-to-host copy of ``n`` rows of logits; waits for the stream. float32 ``N x K``."""
        host = self.buffers(n).host_out
        with self._torch.cuda.stream(self.stream):
            host.copy_(dev_out, non_blocking=True)
        self.stream.synchronize()
        return host.float().numpy().copy()

    def release(self) -> None:
        """Wait for queued work, drop every buffer and hand the freed blocks back to the driver."""
        self.stream.synchronize()
        self._buffers.clear()
        # torch's caching allocator keeps freed blocks; other processes only see the memory after this
        self._torch.cuda.empty_cache()

"""The backend interface: one artifact, loaded once, that maps preprocessed batches to logits.

Parity (``check``), latency (``dacovid-bench``) and the runtime ``Predictor``
all talk to this interface only, so a new runtime is one new backend module.
"""

from __future__ import annotations

import abc
from types import TracebackType

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.core.errors import UserInputError

__all__ = ["Backend", "check_batch", "run_in_chunks"]


class Backend(abc.ABC):
    """Runs one artifact. Use as a context manager so device memory is freed.

    ``run`` takes float32 ``N x 3 x S x S`` (already preprocessed) and returns
    float32 ``N x K`` logits. It validates shapes and raises :class:`UserInputError`
    for a batch outside ``[info.min_batch, info.max_batch]``; callers that want
    large batches split them (see :func:`run_in_chunks`).
    """

    name: str = "abstract"  # "torch" | "onnxruntime" | "tensorrt"

    def __init__(self, info: ArtifactInfo, device: str) -> None:
        self.info = info
        self.device = device

    @property
    def precision(self) -> str:
        return self.info.precision

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Free runtime resources; idempotent."""

    # Timing hooks for dacovid-bench: end-to-end = stage + execute_staged + fetch;
    # compute-only = execute_staged on inputs already on the device. GPU backends
    # override all four and expose their stream as ``cuda_stream`` (a
    # torch.cuda.Stream) so the bench can record CUDA events on it. The CPU
    # defaults below make compute-only equal end-to-end, which is true on a CPU.
    cuda_stream: object | None = None

    def stage(self, batch: np.ndarray) -> None:
        """Copy a preprocessed batch to where ``execute_staged`` reads it (host-to-device on a GPU)."""
        self._staged = check_batch(batch, self.info)

    def execute_staged(self) -> None:
        """Run the network on the staged batch; may return before a GPU finishes (see ``synchronize``)."""
        self._staged_out = self.run(self._staged)

    def fetch(self) -> np.ndarray:
        """Outputs of the last ``execute_staged`` as host float32 logits (device-to-host on a GPU)."""
        return self._staged_out

    def synchronize(self) -> None:
        """Wait for queued device work; nothing to wait for on a CPU."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.name}/{self.device} {self.info.precision} {self.info.path}"


def check_batch(batch: np.ndarray, info: ArtifactInfo) -> np.ndarray:
    """Validate a preprocessed batch against the artifact; returns it as contiguous float32."""
    if not isinstance(batch, np.ndarray):
        raise UserInputError(f"batch must be a numpy array, got {type(batch).__name__}")
    s = info.image_size
    if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
        raise UserInputError(f"batch of shape {tuple(batch.shape)}: {info.path} expects N x 3 x {s} x {s}")
    n = batch.shape[0]
    if n < info.min_batch or (info.max_batch is not None and n > info.max_batch):
        raise UserInputError(
            f"batch size {n} is outside the range {info.min_batch}..{info.max_batch} that {info.path} was built for; "
            "split the batch or rebuild with a larger --max-batch"
        )
    return np.ascontiguousarray(batch, dtype=np.float32)


def run_in_chunks(backend: Backend, batch: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Run a batch of any size, split into pieces the backend accepts (its ``max_batch`` by default)."""
    limit = chunk or backend.info.max_batch or len(batch)
    if len(batch) <= limit:
        return backend.run(batch)
    return np.concatenate([backend.run(batch[i : i + limit]) for i in range(0, len(batch), limit)])

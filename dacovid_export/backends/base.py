"""The backend interface: one artifact, loaded once, that maps preprocessed batches to logits.

Parity (``check``), latency (``dacovid-bench``) and the runtime ``Predictor``
all talk to this interface only, so a new runtime is one new backend module.
The base class owns what every backend shares, as Polygraphy's ``BaseRunner``
does: the lifetime (context manager, idempotent :meth:`Backend.close`, refusal
after close), the input check, the NaN/inf check of the logits, and on CUDA
the staging of host batches (:class:`~dacovid_export.backends.staging.CudaStaging`).
A subclass implements only how its runtime computes.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any, ClassVar, Literal

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo, ArtifactKind
from dacovid_export.backends.staging import CudaStaging
from dacovid_export.core.errors import CheckFailedError, UserInputError

__all__ = ["Backend", "check_batch", "check_finite_logits", "run_any_batch"]


def check_finite_logits(logits: np.ndarray, info: "ArtifactInfo", backend: str) -> np.ndarray:
    """Return ``logits`` unchanged, or raise :class:`CheckFailedError` naming the artifact if any is NaN/inf.

    A NaN or an infinity in the logits means the network overflowed (typically an
    FP16 attention energy past 65,504) or the artifact is damaged; a softmax would
    silently turn it into a confident wrong answer, so it must stop here.
    """
    finite = np.isfinite(logits)
    if finite.all():
        return logits
    bad_rows = int((~finite).any(axis=tuple(range(1, logits.ndim))).sum()) if logits.ndim > 1 else int((~finite).sum())
    kinds = []
    if np.isnan(logits).any():
        kinds.append("NaN")
    if np.isinf(logits).any():
        kinds.append("inf")
    raise CheckFailedError(
        f"{info.path} ({info.precision}, {backend}) produced {'/'.join(kinds)} logits for {bad_rows} of "
        f"{len(logits)} images: the network overflowed or the artifact is damaged "
        "(an FP16 model needs its attention kept in FP32; re-export it, or check it with 'dacovid-export check')"
    )


class Backend(abc.ABC):
    """Runs one artifact. Use as a context manager so device memory is freed.

    ``run`` takes float32 ``N x 3 x S x S`` (already preprocessed) and returns
    float32 ``N x K`` logits. It validates shapes and raises :class:`UserInputError`
    for a batch outside ``[info.min_batch, info.max_batch]``; callers that want
    any batch size use :func:`run_any_batch`. After :meth:`close`, every call
    raises :class:`UserInputError`.

    Subclasses implement :meth:`_run_host` (the host path: CPU runtimes) and,
    when they run on CUDA, create :attr:`_staging` with :meth:`_start_staging`
    and implement :meth:`_execute` (queue the network on the staged device
    input, return the device output). :meth:`_release` frees what they hold.
    """

    name: str = "abstract"  # "torch" | "onnxruntime" | "openvino" | "tensorrt"

    # What the backend is, asked of the class by the registry, bench and the pipeline (never by name):
    label: ClassVar[str] = "abstract"  # the runtime's name in reports ("ONNX Runtime")
    kind: ClassVar[ArtifactKind] = "onnx"  # the artifact kind it runs
    devices: ClassVar[Literal["any", "cpu", "cuda"]] = "any"  # "any", or the one device it runs on
    # the constructor keyword for CPU threads (None: the runtime takes none; torch's are process-wide)
    thread_option: ClassVar[str | None] = None
    # the constructor keyword for the precision it computes in, and the values it takes for an FP32 model
    precision_option: ClassVar[str | None] = None
    precision_choices: ClassVar[tuple[str, ...]] = ()
    # runs a Q/DQ model's INT8 as INT8 kernels on the CPU (auto's choice for INT8 there, and bench's extra rows)
    int8_on_cpu: ClassVar[bool] = False
    # a note the bench report adds when one of its rows ran on this backend
    bench_note: ClassVar[str | None] = None

    # Timing hooks for dacovid-bench: end-to-end = stage + execute_staged + fetch;
    # compute-only = execute_staged on inputs already on the device. A CUDA backend
    # exposes its stream as ``cuda_stream`` (a torch.cuda.Stream) so the bench can
    # record CUDA events on it. On the host path compute-only equals end-to-end,
    # which is true on a CPU.
    cuda_stream: object | None = None
    _staging: CudaStaging | None = None
    _closed: bool = True  # until __init__ has run: a half-built object has nothing to free

    def __init__(self, info: ArtifactInfo, device: str) -> None:
        self.info = info
        self.device = device
        self._closed = False
        self._staged: np.ndarray | None = None  # host path: the checked batch
        self._staged_n: int | None = None  # CUDA path: the size of the staged batch
        self._out: Any = None  # the last execution's output (host array or device tensor)
        self._out_n: int | None = None

    @property
    def precision(self) -> str:
        return self.info.precision

    @property
    def closed(self) -> bool:
        return self._closed

    def describe(self) -> str:
        return f"{self.name}/{self.device} {self.info.precision} {self.info.path}"

    def threads_used(self, requested: int | None) -> int | None:
        """The CPU threads this backend computes with, ``requested`` being what the caller asked for (bench rows)."""
        return requested

    # ------------------------------------------------------------------ running

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``N x K`` logits of a preprocessed batch; NaN/inf logits raise :class:`CheckFailedError`."""
        self._check_open()
        if self._staging is None:
            out = self._run_host(check_batch(batch, self.info))
        else:
            self.stage(batch)
            self.execute_staged()
            out = self.fetch()
        return check_finite_logits(out, self.info, self.describe())

    def _run_host(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a checked float32 batch on the host path; backends that have one override this."""
        raise NotImplementedError(f"{self.describe()} runs on CUDA only")

    def _execute(self, n: int) -> Any:
        """Queue the network on the staged ``n`` rows; return the device output (``n x K``). CUDA backends override this."""
        raise NotImplementedError(f"{self.describe()} has no CUDA path")

    def stage(self, batch: np.ndarray) -> None:
        """Copy a preprocessed batch to where ``execute_staged`` reads it (host-to-device on a GPU)."""
        self._check_open()
        batch = check_batch(batch, self.info)
        if self._staging is None:
            self._staged = batch
        else:
            self._staged_n = self._staging.stage(batch)

    def execute_staged(self) -> None:
        """Run the network on the staged batch; may return before a GPU finishes (see ``synchronize``)."""
        self._check_open()
        if self._staging is None:
            if self._staged is None:
                raise UserInputError("execute_staged() before stage(): stage a batch first")
            # the whole of run(), checks included, so compute-only timing on a CPU equals end-to-end
            self._out = self.run(self._staged)
            self._out_n = len(self._staged)
            return
        if self._staged_n is None:
            raise UserInputError("execute_staged() before stage(): stage a batch first")
        self._out = self._execute(self._staged_n)
        self._out_n = self._staged_n

    def fetch(self) -> np.ndarray:
        """Outputs of the last ``execute_staged`` as host float32 logits (device-to-host on a GPU)."""
        self._check_open()
        if self._out_n is None:
            raise UserInputError("fetch() before execute_staged(): run a staged batch first")
        if self._staging is None:
            return self._out
        return self._staging.fetch(self._out, self._out_n)

    def synchronize(self) -> None:
        """Wait for queued device work; nothing to wait for on the host path."""
        if self._staging is not None and not self._closed:
            self._staging.stream.synchronize()

    # ------------------------------------------------------------------- CUDA

    def _start_staging(self, torch: Any, device: Any, *, in_dtype: Any, out_dtype: Any, rows: int | None = None) -> CudaStaging:
        """Create the stream and buffers of the CUDA path (see :class:`CudaStaging`); exposes the stream."""
        self._staging = CudaStaging(
            torch,
            device,
            image_size=self.info.image_size,
            num_classes=self.info.num_classes,
            in_dtype=in_dtype,
            out_dtype=out_dtype,
            rows=rows,
        )
        self.cuda_stream = self._staging.stream
        return self._staging

    # --------------------------------------------------------------- lifetime

    def _check_open(self) -> None:
        if self._closed:
            raise UserInputError(f"{self.describe()}: backend is closed")

    @contextlib.contextmanager
    def _opening(self) -> Iterator[None]:
        """For constructors that acquire in several steps: until the block ends the backend counts as
        closed, so a failure half-way leaves ``close`` (and ``__del__``) nothing to free or save."""
        self._closed = True
        yield
        self._closed = False

    def close(self) -> None:
        """Wait for queued device work, then free the runtime and buffers; idempotent."""
        if self._closed:
            return
        self._closed = True
        staging = self._staging
        if staging is not None:
            staging.stream.synchronize()
        self._release()
        self._out = self._staged = None
        if staging is not None:
            staging.release()
            self._staging = None
            self.cuda_stream = None

    def _release(self) -> None:
        """Drop the runtime objects (session, engine, model); called once, after queued work finished."""

    def __enter__(self) -> "Backend":
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # a backend dropped without close() still frees its device memory (and TensorRT-RTX saves its cache)
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down CUDA already
            pass


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


def run_any_batch(backend: Backend, batch: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Logits for a preprocessed batch of any size: split to ``max_batch``, pad up to ``min_batch``.

    A static-batch artifact (``min_batch == max_batch``) only runs full batches, so
    a short last piece is padded by repeating its last image and the extra rows
    are dropped. ``chunk`` caps the piece size further (memory).
    """
    info = backend.info
    n = len(batch)
    if n == 0:
        return np.zeros((0, info.num_classes), dtype=np.float32)
    limit = min(chunk or n, info.max_batch or n)
    pieces = []
    for start in range(0, n, limit):
        piece = batch[start : start + limit]  # m x 3 x S x S
        m = len(piece)
        if m < info.min_batch:
            piece = np.concatenate([piece, np.repeat(piece[-1:], info.min_batch - m, axis=0)])
        logits = np.asarray(backend.run(piece), dtype=np.float32)[:m]
        pieces.append(check_finite_logits(logits, info, backend.describe()))
    return np.concatenate(pieces)

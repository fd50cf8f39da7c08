"""What :func:`~dacovid_export.backends.registry.open_backend` may pass to a backend: :class:`BackendOptions`.

One typed record instead of ``**options``: every option any backend takes, ``None``
meaning "not given" (the backend's own default). The checks that need no device or
file run in ``__post_init__`` with the backends' own messages, so a bad value is
refused before an artifact is read; what depends on the device or the artifact
(fp16 autocast on a CPU, a provider for another device) stays with the backend.
"""

from __future__ import annotations

import dataclasses
import os

from dacovid_export.backends.torch_backend import check_torch_options
from dacovid_export.core.onnxruntime_session import check_session_options
from dacovid_export.core.openvino_model import check_openvino_options

__all__ = ["BackendOptions"]


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """Options for a backend's constructor; ``None``: not given.

    torch: ``precision`` (autocast), ``channels_last``, ``cuda_graphs``, ``compile``, ``tf32``;
    onnxruntime: ``provider``, ``intra_op_threads``, ``graph_optimization``;
    openvino: ``inference_precision``, ``threads``; tensorrt: ``runtime_cache``.
    The thread options are the backends' own names; ``auto`` moves one to the name of the
    backend it picks (:attr:`~dacovid_export.backends.base.Backend.thread_option`).
    """

    precision: str | None = None
    channels_last: bool | None = None
    cuda_graphs: bool | None = None
    compile: bool | None = None
    tf32: bool | None = None
    provider: str | None = None
    intra_op_threads: int | None = None
    graph_optimization: str | None = None
    inference_precision: str | None = None
    threads: int | None = None
    runtime_cache: str | os.PathLike[str] | bool | None = None

    def __post_init__(self) -> None:
        flags = {"channels_last": self.channels_last, "cuda_graphs": self.cuda_graphs, "compile": self.compile, "tf32": self.tf32}
        check_torch_options(self.precision, flags)
        check_session_options(self.intra_op_threads, self.graph_optimization or "all")
        check_openvino_options(self.inference_precision, self.threads)

    def given(self) -> dict[str, object]:
        """The options that were given, by constructor keyword."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @property
    def thread_count(self) -> int | None:
        """The CPU thread count asked for under either backend's name (``auto`` times its choice with it)."""
        return self.intra_op_threads if self.intra_op_threads is not None else self.threads

    def with_value(self, option: str | None, value: object) -> "BackendOptions":
        """These options with ``option`` (a field name, e.g. a class's ``thread_option``) set; None: unchanged."""
        if option is None:
            return self
        return dataclasses.replace(self, **{option: value})

    def with_threads_as(self, option: str | None) -> "BackendOptions":
        """The thread count given under either name, moved to ``option`` (the chosen backend's name for it)."""
        count = self.thread_count
        if option is None or count is None:
            return self
        return dataclasses.replace(self, intra_op_threads=None, threads=None).with_value(option, count)

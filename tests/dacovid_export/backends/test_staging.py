"""CUDA staging logic on the CPU: torch's CUDA calls replaced by stand-ins, the copies and buffers real."""

from __future__ import annotations

import contextlib
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend
from dacovid_export.backends.staging import CudaStaging
from dacovid_export.core.errors import UserInputError


class _Recorder:
    """Stands in for torch.cuda.Stream / Event: records synchronisations."""

    cuda_stream = 0

    def __init__(self, *args, **kwargs) -> None:
        self.syncs = 0

    def synchronize(self) -> None:
        self.syncs += 1

    def record(self, stream) -> None:
        pass


def _fake_torch() -> types.SimpleNamespace:
    cuda = types.SimpleNamespace(
        Stream=_Recorder, Event=_Recorder, stream=lambda s: contextlib.nullcontext(), empty_cache=lambda: None
    )
    empty = lambda shape, dtype, pin_memory=False, device=None: torch.empty(shape, dtype=dtype)  # noqa: E731
    return types.SimpleNamespace(cuda=cuda, empty=empty, from_numpy=torch.from_numpy)


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_buffers_per_batch_size_are_kept_and_cast() -> None:
    staging = CudaStaging(_fake_torch(), "cuda", image_size=8, num_classes=3, in_dtype=torch.float16, out_dtype=torch.float16)
    assert staging.stage(_batch(2)) == 2
    first = staging.buffers(2)
    assert staging.buffers(2) is first and first.dev_in.dtype == torch.float16
    np.testing.assert_array_equal(first.dev_in.numpy(), _batch(2).astype(np.float16))
    out = staging.fetch(torch.ones((2, 3), dtype=torch.float16), 2)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    staging.release()
    assert staging._buffers == {}


def test_fixed_rows_share_one_allocation() -> None:
    staging = CudaStaging(_fake_torch(), "cuda", image_size=8, num_classes=3, in_dtype=torch.float32, out_dtype=torch.float32, rows=4)
    whole = staging.buffers(4)
    staging.stage(_batch(3))
    part = staging.buffers(3)
    assert part.dev_in.data_ptr() == whole.dev_in.data_ptr() and part.dev_in.shape[0] == 3
    np.testing.assert_array_equal(whole.dev_in[:3].numpy(), _batch(3))
    with pytest.raises(RuntimeError, match="after buffers"):
        staging.set_dtypes(torch.float16, torch.float16)


class _CudaMeans(Backend):
    """A 'CUDA' backend on the stand-ins: the base's staging path end to end."""

    name = "cudameans"

    def __init__(self, info) -> None:
        super().__init__(info, "cuda")
        self.staging = self._start_staging(_fake_torch(), "cuda", in_dtype=torch.float32, out_dtype=torch.float32)

    def _execute(self, n: int) -> torch.Tensor:
        buffers = self._staging.buffers(n)
        buffers.dev_out.copy_(buffers.dev_in.mean(dim=(2, 3)))
        return buffers.dev_out


def test_cuda_path_of_the_base_class(make_toy_onnx, tmp_path: Path) -> None:
    info = read_artifact_info(make_toy_onnx(tmp_path / "toy.onnx"))
    backend = _CudaMeans(info)
    x = np.random.default_rng(0).standard_normal((2, 3, info.image_size, info.image_size)).astype(np.float32)
    assert backend.cuda_stream is backend.staging.stream
    np.testing.assert_allclose(backend.run(x), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    backend.stage(x[:1])
    backend.execute_staged()
    np.testing.assert_allclose(backend.fetch(), x[:1].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    stream = backend.staging.stream
    backend.close()
    assert stream.syncs >= 2 and backend.cuda_stream is None and backend._staging is None
    backend.synchronize()  # a closed backend has nothing to wait for
    with pytest.raises(UserInputError, match="closed"):
        backend.stage(x)

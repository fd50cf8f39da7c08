"""The Backend base class: lifetime (close, context manager, refusal after close), timing hooks, run_any_batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.backends.base import Backend, run_any_batch
from dacovid_export.core.errors import UserInputError


class _Means(Backend):
    """Host-path backend whose logits are the channel means; counts releases."""

    name = "means"

    def __init__(self, info) -> None:
        super().__init__(info, "cpu")
        self.released = 0

    def _run_host(self, batch: np.ndarray) -> np.ndarray:
        return batch.mean(axis=(2, 3))

    def _release(self) -> None:
        self.released += 1


@pytest.fixture()
def info(make_toy_onnx, tmp_path: Path):
    return read_artifact_info(make_toy_onnx(tmp_path / "toy.onnx"))


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, 64, 64)).astype(np.float32)


def test_close_is_idempotent_and_releases_once(info) -> None:
    backend = _Means(info)
    with backend as entered:
        assert entered is backend and not backend.closed
        np.testing.assert_allclose(backend.run(_batch(2)), _batch(2).mean(axis=(2, 3)), rtol=1e-6)
    assert backend.closed and backend.released == 1
    backend.close()
    assert backend.released == 1


@pytest.mark.parametrize("use", ["run", "stage", "execute_staged", "fetch", "enter"])
def test_every_call_after_close_is_refused(info, use: str) -> None:
    backend = _Means(info)
    backend.stage(_batch(1))
    backend.execute_staged()
    backend.close()
    calls = {
        "run": lambda: backend.run(_batch(1)),
        "stage": lambda: backend.stage(_batch(1)),
        "execute_staged": backend.execute_staged,
        "fetch": backend.fetch,
        "enter": backend.__enter__,
    }
    with pytest.raises(UserInputError, match="backend is closed"):
        calls[use]()


def test_hooks_in_the_wrong_order_are_one_line_errors(info) -> None:
    backend = _Means(info)
    with pytest.raises(UserInputError, match="before stage"):
        backend.execute_staged()
    with pytest.raises(UserInputError, match="before execute_staged"):
        backend.fetch()
    backend.stage(_batch(3))
    backend.execute_staged()
    np.testing.assert_allclose(backend.fetch(), backend.run(_batch(3)), rtol=1e-6)


def test_a_constructor_that_fails_half_way_leaves_nothing_to_close(info) -> None:
    built: list[_Means] = []

    class Failing(_Means):
        def __init__(self, info) -> None:
            super().__init__(info)
            built.append(self)
            with self._opening():
                raise RuntimeError("runtime refused")

    with pytest.raises(RuntimeError):
        Failing(info)
    (half,) = built
    assert half.closed
    half.close()
    assert half.released == 0


def test_run_any_batch_chunks(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.backends.registry import open_backend

    x = np.random.default_rng(0).standard_normal((7, 3, 64, 64)).astype(np.float32)
    with open_backend(make_toy_onnx(tmp_path / "toy.onnx"), device="cpu") as backend:
        whole = run_any_batch(backend, x)
        np.testing.assert_allclose(run_any_batch(backend, x, chunk=3), whole, rtol=1e-6)
        assert run_any_batch(backend, x[:0]).shape == (0, 3)


def test_run_any_batch_pads_a_static_batch(info) -> None:
    static = _Means(dataclasses.replace(info, min_batch=4, max_batch=4))
    x = _batch(6)
    np.testing.assert_allclose(run_any_batch(static, x), x.mean(axis=(2, 3)), rtol=1e-6)

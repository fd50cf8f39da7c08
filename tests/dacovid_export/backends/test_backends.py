"""Backends on the tiny checkpoint: PyTorch vs ONNX Runtime, open_backend's choices and errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dacovid_export.backends.base import check_finite_logits
from dacovid_export.backends.registry import open_backend
from dacovid_export.core.errors import (
    CheckFailedError,
    MissingDependencyError,
    UserInputError,
)

S = 64


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, S, S)).astype(np.float32)


@pytest.fixture(scope="module")
def torch_backend(tiny_checkpoint: Path):
    with open_backend(tiny_checkpoint, device="cpu") as backend:
        yield backend


@pytest.fixture(scope="module")
def ort_backend(tiny_fp32_onnx: Path):
    with open_backend(tiny_fp32_onnx, device="cpu") as backend:
        yield backend


def test_auto_picks_backend_by_file_kind(torch_backend, ort_backend) -> None:
    assert torch_backend.name == "torch" and torch_backend.info.kind == "checkpoint"
    assert ort_backend.name == "onnxruntime" and ort_backend.info.kind == "onnx"
    assert torch_backend.info.source_sha256 == ort_backend.info.source_sha256
    assert ort_backend.describe().startswith("onnxruntime/cpu (CPUExecutionProvider")


def test_torch_and_onnxruntime_agree(torch_backend, ort_backend) -> None:
    x = _batch(3)
    a = torch_backend.run(x)
    b = ort_backend.run(x)
    assert a.shape == b.shape == (3, 3) and a.dtype == b.dtype == np.float32
    scale = np.abs(a).max()
    assert np.abs(a - b).max() <= 1e-4 * scale
    assert (a.argmax(1) == b.argmax(1)).all()


def test_cpu_timing_hooks_equal_run(torch_backend, ort_backend) -> None:
    x = _batch(2, seed=1)
    for backend in (torch_backend, ort_backend):
        backend.stage(x)
        backend.execute_staged()
        backend.synchronize()
        np.testing.assert_array_equal(backend.fetch(), backend.run(x))
        assert backend.cuda_stream is None


def test_batch_shape_is_checked(ort_backend) -> None:
    with pytest.raises(UserInputError, match="expects N x 3 x 64 x 64"):
        ort_backend.run(np.zeros((1, 3, 32, 32), np.float32))


def test_torch_cpu_options(tiny_checkpoint: Path, torch_backend) -> None:
    x = _batch(2, seed=2)
    reference = torch_backend.run(x)
    with open_backend(tiny_checkpoint, device="cpu", channels_last=True) as backend:
        np.testing.assert_allclose(backend.run(x), reference, atol=1e-4 * np.abs(reference).max())
        assert "channels_last" in backend.describe()
    with open_backend(tiny_checkpoint, device="cpu", precision="bf16") as backend:
        assert backend.precision == "bf16"
        out = backend.run(x)
        # bf16 has 8 mantissa bits: close, not equal
        assert np.abs(out - reference).max() <= 0.05 * np.abs(reference).max()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp16"}, "needs device='cuda'"),
        ({"cuda_graphs": True}, "CUDA graphs"),
        ({"tf32": True}, "TF32"),
        ({"precision": "fp8"}, "precision='fp8'"),
        ({"channels_last": "yes"}, "True or False"),
    ],
)
def test_torch_rejects_options_that_do_not_apply_on_cpu(tiny_checkpoint: Path, options: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        open_backend(tiny_checkpoint, device="cpu", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"intra_op_threads": 0}, "intra_op_threads=0"),
        ({"graph_optimization": "max"}, "graph_optimization='max'"),
        ({"provider": "cuda"}, "use device='cuda'"),
        ({"provider": "openvino"}, "provider='openvino'"),
    ],
)
def test_onnxruntime_option_errors(tiny_fp32_onnx: Path, options: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        open_backend(tiny_fp32_onnx, device="cpu", **options)


def test_onnxruntime_threads_option(make_toy_onnx, tmp_path: Path) -> None:
    path = make_toy_onnx(tmp_path / "toy.onnx")
    with open_backend(path, device="cpu", intra_op_threads=1, graph_optimization="basic") as backend:
        assert backend.intra_op_threads == 1
        assert "1 threads" in backend.describe()
        x = _batch(2)
        np.testing.assert_allclose(backend.run(x), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


def test_onnxruntime_casts_to_model_input_dtype(make_toy_onnx, tmp_path: Path) -> None:
    path = make_toy_onnx(tmp_path / "toy16.onnx", input_dtype="float16")
    x = _batch(2)
    with open_backend(path, device="cpu") as backend:
        out = backend.run(x)
    assert out.dtype == np.float32
    expected = x.astype(np.float16).astype(np.float32).mean(axis=(2, 3))
    np.testing.assert_allclose(out, expected, atol=2e-3)


def test_static_batch_is_enforced(make_toy_onnx, tmp_path: Path) -> None:
    path = make_toy_onnx(tmp_path / "static.onnx", batch=2)
    with open_backend(path, device="cpu") as backend:
        assert (backend.info.min_batch, backend.info.max_batch) == (2, 2)
        assert backend.run(_batch(2)).shape == (2, 3)
        with pytest.raises(UserInputError, match="outside the range 2..2"):
            backend.run(_batch(3))


def test_nan_output_is_an_error_naming_the_artifact(make_toy_onnx, tmp_path: Path) -> None:
    path = make_toy_onnx(tmp_path / "nan.onnx", scale=float("nan"))
    with open_backend(path, device="cpu") as backend:
        with pytest.raises(CheckFailedError, match=r"nan\.onnx.*NaN logits for 2 of 2 images"):
            backend.run(_batch(2))


def test_check_finite_logits_reports_inf(ort_backend) -> None:
    logits = np.array([[1.0, 2.0, 3.0], [np.inf, 0.0, 0.0]], dtype=np.float32)
    with pytest.raises(CheckFailedError, match="inf logits for 1 of 2"):
        check_finite_logits(logits, ort_backend.info, "test")
    ok = logits[:1]
    assert check_finite_logits(ok, ort_backend.info, "test") is ok


def test_closed_backend_refuses_to_run(make_toy_onnx, tmp_path: Path) -> None:
    path = make_toy_onnx(tmp_path / "toy.onnx")
    backend = open_backend(path, device="cpu")
    with backend:
        backend.run(_batch(1))
    backend.close()  # idempotent
    with pytest.raises(UserInputError, match="closed"):
        backend.run(_batch(1))


# ------------------------------------------------------------------ open_backend errors


def test_unknown_backend(tiny_fp32_onnx: Path) -> None:
    with pytest.raises(UserInputError, match="unknown backend 'tflite'"):
        open_backend(tiny_fp32_onnx, backend="tflite")


def test_backend_that_cannot_run_this_file_kind(tiny_fp32_onnx: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(UserInputError, match="cannot run .*ONNX model.*use backend 'onnxruntime'"):
        open_backend(tiny_fp32_onnx, backend="torch")
    with pytest.raises(UserInputError, match="checkpoint.*use backend 'torch'"):
        open_backend(tiny_checkpoint, backend="tensorrt")


def test_unknown_file_kind(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"x")
    with pytest.raises(UserInputError, match="unknown artifact type '.tflite'"):
        open_backend(path)


def test_unknown_option_lists_accepted_ones(tiny_fp32_onnx: Path) -> None:
    with pytest.raises(UserInputError, match="no option.*cuda_graphs.*accepts: .*intra_op_threads"):
        open_backend(tiny_fp32_onnx, device="cpu", cuda_graphs=True)


def test_bad_device(tiny_fp32_onnx: Path) -> None:
    with pytest.raises(UserInputError, match="device='tpu'"):
        open_backend(tiny_fp32_onnx, device="tpu")


def test_engine_on_cpu_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(UserInputError, match="GPU only"):
        open_backend(engine, device="cpu")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_rtx") is not None,
    reason="TensorRT or TensorRT-RTX is installed here (test_trt_rtx.py covers an engine whose runtime is missing)",
)
def test_tensorrt_missing_is_one_line(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(MissingDependencyError) as info:
        open_backend(engine)
    message = str(info.value)
    assert "\n" not in message
    assert "TensorRT" in message and "pip install" in message and "[trt]" in message


def test_cuda_requested_without_gpu(tiny_checkpoint: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(MissingDependencyError, match="CUDA is not available"):
        open_backend(tiny_checkpoint, device="cuda")


def test_one_registry_table_drives_names_defaults_devices_and_bench_choices() -> None:
    from dacovid_export.backends.registry import (
        BACKEND_FOR_KIND,
        BACKEND_NAMES,
        BACKENDS,
        KINDS_OF_BACKEND,
        resolve_device,
    )
    from dacovid_export.bench.config import BACKEND_CHOICES

    assert BACKEND_NAMES == ("torch", "onnxruntime", "openvino", "tensorrt")
    assert BACKEND_CHOICES == ("auto", *BACKEND_NAMES)
    assert dict(BACKEND_FOR_KIND) == {"checkpoint": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}
    assert KINDS_OF_BACKEND["openvino"] == "onnx"
    assert {name: e.devices for name, e in BACKENDS.items() if e.devices != "any"} == {"openvino": "cpu", "tensorrt": "cuda"}
    assert resolve_device("auto", "openvino") == "cpu" and resolve_device("auto", "tensorrt") == "cuda"
    with pytest.raises(UserInputError, match="TensorRT engines run on an NVIDIA GPU only"):
        resolve_device("cpu", "tensorrt")
    with pytest.raises(UserInputError, match="the openvino backend runs on the CPU only"):
        resolve_device("cuda", "openvino")


def test_backend_options_are_checked_before_any_file_is_read(tmp_path: Path) -> None:
    from dacovid_export.backends.registry import BackendOptions

    missing = tmp_path / "absent.onnx"  # never read: the options are refused first
    with pytest.raises(UserInputError, match="intra_op_threads=0"):
        open_backend(missing, intra_op_threads=0)
    with pytest.raises(UserInputError, match="inference_precision='f16'"):
        open_backend(missing, options=BackendOptions(inference_precision="f16"))
    not_a_bool: Any = "yes"
    with pytest.raises(UserInputError, match="channels_last='yes': must be True or False"):
        BackendOptions(channels_last=not_a_bool)
    with pytest.raises(UserInputError, match="options given twice"):
        open_backend(missing, options=BackendOptions(threads=2), threads=2)
    assert BackendOptions(threads=3).with_threads_as("intra_op_threads").given() == {"intra_op_threads": 3}


def test_backend_behaviour_is_asked_of_the_classes() -> None:
    """bench and the pipeline name no backend: what they need is a class attribute the registry derives from."""
    from dacovid_export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dacovid_export.backends.registry import BF16_BACKEND, CPU_INT8_BACKEND, backend_label

    assert (CPU_INT8_BACKEND, BF16_BACKEND) == ("openvino", "openvino")
    assert [backend_label(n) for n in ("torch", "onnxruntime", "openvino", "tensorrt", "triton")] == [
        "PyTorch", "ONNX Runtime", "OpenVINO", "TensorRT", "triton"]
    assert OnnxRuntimeBackend.thread_option == "intra_op_threads" and OnnxRuntimeBackend.precision_option is None


def test_threads_used_is_what_the_runtime_computes_with(make_toy_onnx, tmp_path: Path) -> None:
    from dacovid_export.core.cpu import physical_cores

    path = make_toy_onnx(tmp_path / "toy.onnx")
    with open_backend(path, backend="onnxruntime", device="cpu") as default, open_backend(
        path, backend="onnxruntime", device="cpu", intra_op_threads=1
    ) as one:
        assert default.threads_used(None) == physical_cores() and one.threads_used(4) == 1

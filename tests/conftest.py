"""Shared fixtures: tiny models and synthetic images that keep the suite fast on 2 CPU cores.

Real-data tests read the folder named by ``DACOVID_REAL_DATA`` (``.ci/run`` points it at
``../shared/data/cxr3``) and skip with a reason when it is unset.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from tests.helpers import tiny


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # the INT8 calibration cache defaults to ~/.cache: keep test runs out of the user's cache
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    # `auto` for FP32 ONNX on the CPU measures which runtime is faster here: pin it so every test sees the
    # same backend; tests/dacovid_export/backends/test_cpu_choice.py unpins it to test the measurement
    os.environ.setdefault("DACOVID_CPU_RUNTIME", "onnxruntime")


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# --- the tiny model's settings (values live in tests/helpers/tiny.py) --------------------------


@pytest.fixture(scope="session")
def tiny_image_size() -> int:
    """Side of the tiny model's square input (64)."""
    return tiny.TINY_IMAGE_SIZE


@pytest.fixture(scope="session")
def tiny_classes() -> tuple[str, ...]:
    """Class names of the tiny checkpoint (the paper's three)."""
    return tiny.TINY_CLASSES


@pytest.fixture
def tiny_model_kwargs() -> dict:
    """``dacovid_net`` options of the tiny model (a fresh dict per test)."""
    return tiny.tiny_model_kwargs()


@pytest.fixture(scope="session")
def tiny_train_config():
    """Factory of the tiny model's ``TrainConfig``: ``tiny_train_config(epochs=3, ...)``."""
    return tiny.tiny_train_config


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    value = os.environ.get("DACOVID_REAL_DATA")
    if not value:
        pytest.skip("DACOVID_REAL_DATA is not set: point it at a class-per-folder chest X-ray set (e.g. ../shared/data/cxr3)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"DACOVID_REAL_DATA={value!r} is not a directory")
    return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class-per-folder synthetic PNGs: normal/, pneumonia/, covid/, 8 each, 64x64."""
    from dacovid_export.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), per_class=8, size=tiny.TINY_IMAGE_SIZE, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained tiny model with non-zero gamma/beta so both attention branches matter."""
    import torch

    from dacovid_export.data.preprocessing import Preprocessing
    from dacovid_export.model import dacovid_net, save_checkpoint

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dacovid_net(**tiny.tiny_model_kwargs())
    with torch.no_grad():
        model.pam.gamma.fill_(0.5)
        model.cam.beta.fill_(0.5)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, class_names=tiny.TINY_CLASSES, preprocessing=Preprocessing(image_size=tiny.TINY_IMAGE_SIZE))
    return path


# --- training (tests/train and anyone who needs a trained model) ---------------------------


@pytest.fixture(scope="session")
def trained_tiny_checkpoint(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of the tiny model trained 6 epochs on ``synthetic_dir`` at 64x64 (split.json beside it).

    It separates the synthetic classes clearly better than chance (a trained model
    for FP16/INT8 parity); ``dacovid_export.train.heldout_files(path)`` gives its held-out images.
    """
    from dacovid_export.train import train_model

    run = tmp_path_factory.mktemp("trained_tiny")
    result = train_model(synthetic_dir, run, tiny.tiny_train_config(epochs=6))
    return result.best_checkpoint


@pytest.fixture(scope="session")
def recorded_checkpoint(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of the tiny model trained 1 epoch on ``synthetic_dir``: it records its 18 training and 6 held-out images."""
    from dacovid_export.train import train_model

    run = tmp_path_factory.mktemp("recorded")
    return train_model(synthetic_dir, run, tiny.tiny_train_config(epochs=1)).best_checkpoint


@pytest.fixture(scope="session")
def recorded_fp32_onnx(recorded_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 ONNX of ``recorded_checkpoint``: it carries the checkpoint's record of its images."""
    from dacovid_export.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("recorded_onnx") / "recorded.onnx"
    export_onnx(recorded_checkpoint, path)
    return path


# --- backends, parity, runtime ------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_fp32_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Self-checked FP32 ONNX export (dynamic batch, with metadata) of ``tiny_checkpoint``."""
    from dacovid_export.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx_fp32") / "tiny.onnx"
    export_onnx(tiny_checkpoint, path)
    return path



@pytest.fixture(scope="session")
def make_toy_onnx(tiny_checkpoint: Path):
    """Factory of hand-made ONNX models with dacovid-export metadata, tiny and instant to run.

    ``logits = ReduceMean(input, axes=[2, 3]) * scale`` (N x 3 x S x S -> N x 3, the
    channel means): nothing like the real network, but a real ONNX file for testing
    dtype casts (``input_dtype="float16"``), a static batch (``batch=2``), NaN
    outputs (``scale=float("nan")``) and metadata checks. Metadata defaults to
    ``tiny_checkpoint``'s (classes, preprocessing, sha256).
    """

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from dacovid_export.artifacts.onnx_metadata import write_metadata
    from dacovid_export.core.fileio import sha256_file
    from dacovid_export.data.preprocessing import Preprocessing

    checkpoint_sha = sha256_file(tiny_checkpoint)

    def make(path: Path, *, input_dtype: str = "float32", batch: int | None = None, scale: float = 1.0,
             class_names=tiny.TINY_CLASSES, precision: str = "fp32", source_sha256: str | None = None,
             image_size: int = tiny.TINY_IMAGE_SIZE) -> Path:
        elem = TensorProto.FLOAT16 if input_dtype == "float16" else TensorProto.FLOAT
        n = batch if batch is not None else "batch"
        nodes = [
            helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
            helper.make_node("Cast", ["mean"], ["mean32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["mean32", "scale"], ["logits"]),
        ]
        graph = helper.make_graph(
            nodes,
            "toy",
            [helper.make_tensor_value_info("input", elem, [n, 3, image_size, image_size])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, 3])],
            initializer=[
                numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"),
                numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        write_metadata(
            model,
            {
                "format": "dacovid-onnx",
                "format_version": "1",
                "class_names": list(class_names),
                "preprocessing": Preprocessing(image_size=image_size).to_dict(),
                "precision": precision,
                "source_sha256": source_sha256 or checkpoint_sha,
            },
        )
        onnx.save(model, str(path))
        return path

    return make


@pytest.fixture(scope="session")
def tiny_fp16_onnx(tiny_fp32_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP16 (AutoCast, attention FP32) of ``tiny_fp32_onnx``."""
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.convert import convert_precision

    path = tmp_path_factory.mktemp("onnx_fp16") / "tiny.fp16.onnx"
    convert_precision(tiny_fp32_onnx, path, PrecisionConfig(precision="fp16"))
    return path


@pytest.fixture(scope="session")
def tiny_int8_onnx(tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INT8 Q/DQ of ``tiny_fp32_onnx`` calibrated on 8 synthetic images."""
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.convert import convert_precision

    path = tmp_path_factory.mktemp("onnx_int8") / "tiny.int8.onnx"
    convert_precision(tiny_fp32_onnx, path, PrecisionConfig(precision="int8", calib_data=synthetic_dir, calib_size=8))
    return path

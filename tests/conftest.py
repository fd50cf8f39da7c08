"""Shared fixtures: tiny models and synthetic images that keep the suite fast on 2 CPU cores.

Real-data tests read the folder named by ``DACOVID_REAL_DATA`` (``.ci/run`` points it at
``../shared/data/cxr3``) and skip with a reason when it is unset.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

TINY_IMAGE_SIZE = 64
TINY_CLASSES = ("Normal", "Pneumonia", "COVID-19")


def tiny_model_kwargs() -> dict:
    """Paper topology (dilated ResNet50, OS 8, PAM + CAM), narrow head: fast at 64x64."""
    return {"output_stride": 8, "reduction_channels": 16, "reduction_kernel_size": 1, "dropout": 0.0}


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
    from dacovid_export.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), per_class=8, size=TINY_IMAGE_SIZE, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained tiny model with non-zero gamma/beta so both attention branches matter."""
    import torch

    from dacovid_export.model import dacovid_net, save_checkpoint
    from dacovid_export.preprocessing import Preprocessing

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dacovid_net(**tiny_model_kwargs())
    with torch.no_grad():
        model.pam.gamma.fill_(0.5)
        model.cam.beta.fill_(0.5)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, class_names=TINY_CLASSES, preprocessing=Preprocessing(image_size=TINY_IMAGE_SIZE))
    return path

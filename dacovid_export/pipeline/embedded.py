"""The embedded default: the paper's network with seeded random weights, and what a report says about it.

Without a checkpoint the pipeline runs on this model (attention weights
gamma = beta = 0.5, so both attention branches change the output), saved as a
checkpoint in ``out``, with synthetic chest-X-ray-like images the project draws
itself (see :mod:`dacovid_export.pipeline.inputs`). Its accuracy figures mean
nothing; its parity and latency figures are real measurements of this network
on this machine. It is sized to finish within 10 minutes on 2 CPU cores: 24
parity images, batch 1, 10 timed iterations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dacovid_export.data.preprocessing import Preprocessing

__all__ = [
    "EMBEDDED_IMAGE_SIZE",
    "EMBEDDED_ATTENTION_WEIGHT",
    "EMBEDDED_IMAGES_PER_CLASS",
    "EMBEDDED_NOTICE",
    "make_embedded_checkpoint",
]

EMBEDDED_IMAGE_SIZE = 224
EMBEDDED_ATTENTION_WEIGHT = 0.5
EMBEDDED_IMAGES_PER_CLASS = 8  # 24 images: calibration and parity

EMBEDDED_NOTICE = (
    "This run used the embedded default: the paper's network with seeded random (untrained) weights and synthetic "
    "images drawn by the project. Its accuracy figures mean nothing. Its parity figures (agreement of every "
    "exported model with the PyTorch reference) and its latency figures are real measurements of this network "
    "on this machine."
)


def make_embedded_checkpoint(
    path: str | os.PathLike[str],
    *,
    image_size: int = EMBEDDED_IMAGE_SIZE,
    model_options: Mapping[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Save the embedded default model: seeded random weights, gamma = beta = 0.5, paper class names."""
    import torch

    from dacovid_export.data.fingerprint import FingerprintSet, ImageRecord
    from dacovid_export.model import (
        DEFAULT_CLASS_NAMES,
        DACovidNet,
        ModelConfig,
        save_checkpoint,
    )

    torch.manual_seed(seed)
    model = DACovidNet(ModelConfig(**dict(model_options or {})))
    with torch.no_grad():
        # non-zero attention weights so the attention paths (and their FP16 ranges) matter
        model.pam.gamma.fill_(EMBEDDED_ATTENTION_WEIGHT)
        model.cam.beta.fill_(EMBEDDED_ATTENTION_WEIGHT)
    model.eval()
    nothing = FingerprintSet.of(())
    return save_checkpoint(
        path,
        model,
        # never trained: no image can have trained it, and the record says so (instead of "could not check")
        image_record=ImageRecord(nothing, nothing, "the embedded default (never trained)"),
        class_names=DEFAULT_CLASS_NAMES,
        preprocessing=Preprocessing(image_size=image_size),
        training={
            "embedded_default": True,
            "note": "seeded random weights, never trained: accuracy is meaningless",
            "seed": seed,
            "attention_weight": EMBEDDED_ATTENTION_WEIGHT,
        },
    )

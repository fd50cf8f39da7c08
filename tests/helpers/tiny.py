"""Tiny-model settings shared by the tests (`from tests.helpers.tiny import ...`)."""

from __future__ import annotations

TINY_IMAGE_SIZE = 64
TINY_CLASSES = ("Normal", "Pneumonia", "COVID-19")


def tiny_model_kwargs() -> dict:
    """Paper topology (dilated ResNet50, OS 8, PAM + CAM), narrow head: fast at 64x64."""
    return {"output_stride": 8, "reduction_channels": 16, "reduction_kernel_size": 1, "dropout": 0.0}


def tiny_train_config(**overrides):
    """TrainConfig for the tiny model at 64x64: batch 4, lr 1e-3 (fast to learn the synthetic classes), no workers."""
    from dacovid_export.train import TrainConfig

    options = dict(
        epochs=1,
        batch_size=4,
        lr=1e-3,
        image_size=TINY_IMAGE_SIZE,
        workers=0,
        show_progress=False,
        **tiny_model_kwargs(),
    )
    options.update(overrides)
    return TrainConfig(**options)

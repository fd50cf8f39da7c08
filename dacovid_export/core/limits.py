"""Sane bounds on the sizes a user chooses, checked before any work, so a typo fails in a second, not after minutes of swapping.

- image size 32..1024: the backbone downsamples 32x, and position attention holds
  an ``(S/8)^2 x (S/8)^2`` matrix per image (1 GiB at 1024, 16 GiB at 2048).
- batch size 1..1024: far beyond any deployed engine profile (typically 1-64),
  while 224x224 inputs alone already take 0.6 GB at 1024.
- resize size image_size..2048: the shorter side before the centre crop (ImageNet's 8/7 gives 1170
  at 1024); a resized 16:1 image is at most 16 x 2048^2 float32 pixels (256 MiB), where an
  artifact saying 1,000,000 would ask for terabytes.
- class count 2..1000: a classifier's head; each class name is also a line of every report.
- QAT epochs 1..1000: an epoch rewrites a state file ~3x the checkpoint (0.5 GB at 224 px); 1000
  is days of work where the default is 2.
- calibration/validation image count 1..100000: every image is held in memory preprocessed
  (0.6 MB at 224 px, 60 GB at 100000).
"""

from __future__ import annotations

from dacovid_export.core.validate import check_int

__all__ = [
    "MIN_IMAGE_SIZE",
    "MAX_IMAGE_SIZE",
    "MAX_BATCH_SIZE",
    "MAX_RESIZE_SIZE",
    "MAX_CLASSES",
    "MAX_QAT_EPOCHS",
    "MAX_IMAGE_COUNT",
    "MIN_GEMM_SIZE",
    "MAX_GEMM_SIZE",
    "MAX_TRITON_INSTANCES",
    "MAX_QUEUE_DELAY_US",
    "MAX_PROBE_INTERVAL_S",
    "MAX_REQUEST_MB",
    "MAX_CONCURRENCY",
    "check_image_size",
    "check_batch_size",
    "check_resize_size",
    "check_count",
]

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 1024
MAX_RESIZE_SIZE = 2048
MAX_CLASSES = 1000
MAX_QAT_EPOCHS = 1000
MAX_IMAGE_COUNT = 100_000
# the FP32 GEMM bench's reference product (bench.gemm): 16 is too small to time, 16384^2 float32 is 1 GiB per operand
MIN_GEMM_SIZE = 16
MAX_GEMM_SIZE = 16384
# Triton's classifier and preprocessing instances (per GPU or on the CPU), its dynamic batcher's longest wait (10 s),
# and serve's health-probe interval (an hour: a probe that rare watches nothing)
MAX_TRITON_INSTANCES = 64
MAX_QUEUE_DELAY_US = 10_000_000
MAX_PROBE_INTERVAL_S = 3600
# a served request is held whole in memory by Triton and the stub (twice): beyond 1 GB is no chest X-ray batch
MAX_REQUEST_MB = 1024
# concurrent clients of one served level in the bench: each holds a connection and a batch of encoded images
MAX_CONCURRENCY = 256


def check_image_size(value: object, name: str = "image_size") -> int:
    """``value`` when it is an integer from :data:`MIN_IMAGE_SIZE` to :data:`MAX_IMAGE_SIZE`; else :class:`UserInputError`."""
    return check_int(
        name, value, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
        why=" (the backbone downsamples 32x; attention memory grows with the 4th power of the size)",
    )


def check_batch_size(value: object, name: str = "batch size", minimum: int = 1) -> int:
    """``value`` when it is an integer from ``minimum`` to :data:`MAX_BATCH_SIZE`; else :class:`UserInputError`."""
    return check_int(name, value, minimum, MAX_BATCH_SIZE)


def check_resize_size(value: object, image_size: int, name: str = "resize_size") -> int:
    """``value`` when it is an integer from ``image_size`` to :data:`MAX_RESIZE_SIZE`; else :class:`UserInputError`."""
    # the lower bound is named, not only its value: it is the model's own image size
    return check_int(
        name, value, image_size, MAX_RESIZE_SIZE,
        why=f" (image_size {image_size} and up: the shorter side before the centre crop; memory grows with its square)",
    )


def check_count(value: object, name: str, maximum: int, minimum: int = 1) -> int:
    """``value`` when it is an integer from ``minimum`` to ``maximum``; else :class:`UserInputError` quoting both."""
    return check_int(name, value, minimum, maximum)

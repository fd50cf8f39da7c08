"""Sane bounds on the sizes a user chooses, checked before any work, so a typo fails in a second, not after minutes of swapping.

- image size 32..1024: the backbone downsamples 32x, and position attention holds
  an ``(S/8)^2 x (S/8)^2`` matrix per image (1 GiB at 1024, 16 GiB at 2048).
- batch size 1..1024: far beyond any deployed engine profile (typically 1-64),
  while 224x224 inputs alone already take 0.6 GB at 1024.
"""

from __future__ import annotations

from dacovid_export.core.errors import UserInputError

__all__ = ["MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE", "MAX_BATCH_SIZE", "check_image_size", "check_batch_size"]

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 1024


def check_image_size(value: object, name: str = "image_size") -> int:
    """``value`` when it is an integer from :data:`MIN_IMAGE_SIZE` to :data:`MAX_IMAGE_SIZE`; else :class:`UserInputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
        raise UserInputError(
            f"{name}={value!r}: give an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (the backbone downsamples "
            f"32x; attention memory grows with the 4th power of the size)"
        )
    return value


def check_batch_size(value: object, name: str = "batch size", minimum: int = 1) -> int:
    """``value`` when it is an integer from ``minimum`` to :data:`MAX_BATCH_SIZE`; else :class:`UserInputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_BATCH_SIZE:
        raise UserInputError(f"{name}={value!r}: give an integer from {minimum} to {MAX_BATCH_SIZE}")
    return value

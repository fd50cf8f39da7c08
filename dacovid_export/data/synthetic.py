"""Synthetic chest-X-ray-like images the project makes itself: for the quick start, tests and the pipeline default.

Each class has a visible, learnable signature so a few epochs separate them:
normal = two clear lung fields; pneumonia = one dense focal opacity in one lung;
COVID-19 = bilateral, peripheral, hazy patches. They mean nothing clinically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dacovid_export.data.preprocessing import Preprocessing, preprocess

__all__ = ["SYNTHETIC_CLASSES", "synthetic_image", "make_synthetic_dataset", "synthetic_batch"]

# folder name -> class; same folder names as the real cxr3 set
SYNTHETIC_CLASSES = ("normal", "pneumonia", "covid")


def _blob(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))


def synthetic_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``size x size`` image of class ``label`` (index into :data:`SYNTHETIC_CLASSES`)."""
    yy, xx = np.mgrid[0:1:complex(size), 0:1:complex(size)]
    img = 0.75 - 0.25 * _blob(yy, xx, 0.5, 0.5, 0.9, 0.9)  # bright body, darker middle
    jitter = rng.normal(0, 0.02, size=4)
    lungs = [(0.48 + jitter[0], 0.3 + jitter[1]), (0.48 + jitter[2], 0.7 + jitter[3])]
    for cy, cx in lungs:
        img -= 0.45 * _blob(yy, xx, cy, cx, 0.28, 0.14)  # dark lung fields
    img += 0.25 * _blob(yy, xx, 0.5, 0.5, 0.45, 0.05)  # mediastinum
    if label == 1:
        cy, cx = lungs[int(rng.integers(0, 2))]
        img += 0.5 * _blob(yy, xx, cy + rng.uniform(-0.1, 0.15), cx + rng.uniform(-0.04, 0.04), 0.08, 0.06)
    elif label == 2:
        for cy, cx in lungs:
            side = -1 if cx < 0.5 else 1
            for _ in range(3):
                img += 0.18 * _blob(
                    yy, xx, cy + rng.uniform(-0.2, 0.2), cx + side * rng.uniform(0.03, 0.08), 0.07, 0.05
                )
    img += rng.normal(0, 0.04, size=img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_synthetic_dataset(
    root: str | os.PathLike[str],
    *,
    per_class: int = 16,
    size: int = 64,
    seed: int = 0,
    classes: Sequence[str] = SYNTHETIC_CLASSES,
    layout: str = "folders",
    test_per_class: int = 0,
) -> Path:
    """Write a class-per-folder tree of PNGs (``layout="kaggle"``: ``train/`` and ``test/`` subtrees)."""
    if layout not in ("folders", "kaggle"):
        raise ValueError(f"layout={layout!r}: use 'folders' or 'kaggle'")
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits = [("", per_class)] if layout == "folders" else [("train", per_class), ("test", test_per_class or max(2, per_class // 4))]
    for split, count in splits:
        for label, name in enumerate(classes):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(synthetic_image(label % 3, size, rng), mode="L").save(folder / f"{name}_{i:04d}.png")
    return root


def synthetic_batch(batch: int, image_size: int, seed: int = 0) -> np.ndarray:
    """Seeded float32 ``batch x 3 x S x S`` inputs, already normalised like real images (for parity without data)."""
    rng = np.random.default_rng(seed)
    spec = Preprocessing(image_size=image_size)
    return np.stack([preprocess(synthetic_image(i % 3, image_size, rng), spec) for i in range(batch)])

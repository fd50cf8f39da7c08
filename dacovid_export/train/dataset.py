"""Images as tensors for training and evaluation, through the project's one preprocessing.

Augmentation randomness is a pure function of ``(seed, epoch, sample index)``:
each sample gets its own ``numpy`` generator, so the crops and flips do not
depend on the number of workers, the process that loads the sample, or whether
the run was resumed.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dacovid_export.data.dicom import DicomWarning
from dacovid_export.data.preprocessing import (
    Preprocessing,
    preprocess,
    preprocess_train,
)

__all__ = ["ImageDataset", "worker_init_fn", "make_loader"]


class ImageDataset(Dataset):
    """``(float32 3 x S x S tensor, label)`` for each ``(path, label)``; random crop + flip when ``train``."""

    def __init__(self, items: Sequence[tuple[Path, int]], spec: Preprocessing, *, train: bool, seed: int = 0) -> None:
        self.items = list(items)
        self.spec = spec
        self.train = train
        self.seed = seed
        # set by the training loop before each epoch; workers copy it when the epoch's iterator starts
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        with warnings.catch_warnings():
            # a non-chest DICOM was reported once when the images were checked, not again every epoch
            warnings.simplefilter("ignore", DicomWarning)
            if self.train:
                rng = np.random.default_rng([self.seed, self.epoch, index])
                x = preprocess_train(path, self.spec, rng)
            else:
                x = preprocess(path, self.spec)
        return torch.from_numpy(x), label


def worker_init_fn(worker_id: int) -> None:
    """Seed the global numpy / random generators of a worker from torch's per-worker seed.

    Torch derives that seed from the main process's generator, which the loop
    seeds per epoch, so any library that draws from the globals is reproducible too.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: ImageDataset,
    *,
    batch_size: int,
    workers: int,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=worker_init_fn if workers > 0 else None,
        drop_last=drop_last,
        pin_memory=pin_memory,
        # workers are started per epoch so they see the dataset's current epoch
        persistent_workers=False,
    )

"""The one seed rule of the project's loops (training and the QAT fine-tune): a seed per (run seed, epoch, ...)."""

from __future__ import annotations

import numpy as np

__all__ = ["epoch_seed"]


def epoch_seed(*parts: int) -> int:
    """A 32-bit seed drawn from ``parts`` (e.g. run seed, epoch, rank) by NumPy's SeedSequence: distinct for distinct
    parts, so epochs (and ranks) never share a shuffle, and the same on every machine, so a resumed run repeats the
    epochs an uninterrupted one would have run."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])

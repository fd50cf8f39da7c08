"""Training: data discovery, splits, the loop and its metrics. Uses the model, never export code.

Public entry points: :func:`train_model` (what ``dacovid-train`` runs),
:func:`evaluate_checkpoint` and :func:`heldout_files` (the held-out images of a run).
"""

from dacovid_export.train.config import TrainConfig, default_workers
from dacovid_export.train.data import (
    DataSplit,
    heldout_files,
    make_split,
    read_split,
    stratified_split,
)
from dacovid_export.train.evaluate import evaluate_checkpoint
from dacovid_export.train.loop import TrainResult, train_model

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train_model",
    "evaluate_checkpoint",
    "heldout_files",
    "DataSplit",
    "make_split",
    "read_split",
    "stratified_split",
    "default_workers",
]

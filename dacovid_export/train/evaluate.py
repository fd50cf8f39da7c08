"""Predictions over a loader, and the accuracy of a checkpoint on a folder or on its run's held-out split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_batch_size
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.validate import check_int
from dacovid_export.data.image_folder import (
    match_folders_to_classes,
    scan_class_folders,
)
from dacovid_export.data.metrics import ClassificationReport, classification_report
from dacovid_export.model.torch_load import LOAD_ERRORS
from dacovid_export.train.amp import AmpPrecision
from dacovid_export.train.data import heldout_files, kaggle_subfolders, verify_images
from dacovid_export.train.dataset import ImageDataset, make_loader
from dacovid_export.train.distributed import training_device

__all__ = ["predict", "evaluate_checkpoint"]


def predict(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: AmpPrecision | None = None,
    desc: str = "evaluating",
    show_progress: bool = False,
) -> tuple[list[int], list[int], float]:
    """``(true labels, predicted labels, summed cross-entropy)`` over ``loader``, model in eval mode."""
    precision = precision or AmpPrecision(device.type, None)
    model.eval()
    targets: list[int] = []
    preds: list[int] = []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad(), progress_bar(total=len(loader), desc=desc, unit="batch", enabled=show_progress) as bar:
        for x, y in loader:
            x = x.to(device, non_blocking=True)  # B x 3 x S x S
            if precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)  # B
            with precision.autocast():
                logits = model(x)  # B x K
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            preds.extend(logits.argmax(dim=1).tolist())
            targets.extend(y.tolist())
            bar.update(1)
    return targets, preds, float(loss_sum)


def _folder_items(data_dir: Path, class_names: tuple[str, ...]) -> list[tuple[Path, str, int]]:
    kaggle = kaggle_subfolders(data_dir)
    root = kaggle[1] if kaggle is not None else data_dir  # a Kaggle tree is evaluated on its test/ part
    folders = scan_class_folders(root, min_classes=1)
    mapping = match_folders_to_classes(list(folders), class_names)
    return [(p, folder, mapping[folder]) for folder, paths in folders.items() for p in paths]


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 16,
    device: str = "auto",
    workers: int = 0,
    unreadable: Literal["skip", "error"] = "skip",
    show_progress: bool = False,
) -> ClassificationReport:
    """Accuracy, per-class precision / recall / F1 and confusion matrix of a checkpoint, in FP32.

    ``data_dir``: a class-per-folder tree (every image is evaluated; folders map
    to the checkpoint's classes through the usual aliases; a Kaggle tree is
    evaluated on its ``test/`` part). ``None``: the held-out images recorded in
    the ``split.json`` beside the checkpoint (the run's validation set).
    """
    from dacovid_export.model import load_checkpoint

    check_batch_size(batch_size, "batch_size")
    check_int("workers", workers, 0)
    try:
        model, meta = load_checkpoint(checkpoint)
    except UserInputError:
        raise
    except LOAD_ERRORS as exc:
        raise UserInputError(f"{str(checkpoint)!r} is not a dacovid-export checkpoint (torch.load failed: {type(exc).__name__}: {exc})") from exc
    if data_dir is None:
        files = heldout_files(checkpoint)
        mapping = match_folders_to_classes(list(files), meta.class_names)
        by_class = {name: files[name] for name in files}
        labels = {name: mapping[name] for name in files}
    else:
        root = Path(data_dir)
        by_class, labels = {}, {}
        for path, folder, label in _folder_items(root, meta.class_names):
            by_class.setdefault(folder, []).append(path)
            labels[folder] = label
        by_class, _ = verify_images(by_class, unreadable=unreadable, show_progress=show_progress)
    items = [(p, labels[name]) for name, paths in by_class.items() for p in paths]
    dev = training_device(device)
    model.to(dev)
    loader = make_loader(
        ImageDataset(items, meta.preprocessing, train=False), batch_size=batch_size, workers=workers, pin_memory=dev.type == "cuda"
    )
    targets, preds, _ = predict(model, loader, device=dev, show_progress=show_progress)
    return classification_report(targets, preds, meta.class_names)

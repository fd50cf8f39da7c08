"""`dacovid-train` (also `dacovid-export train`): options -> TrainConfig -> train_model -> summary."""

from __future__ import annotations

from pathlib import Path

import click

from dacovid_export.train.config import TrainConfig
from dacovid_export.cli.common import (
    field_default,
    OneLineErrorsCommand,
    handle_errors,
    verbosity_options,
)

__all__ = ["train", "main"]


@click.command(name="train", cls=OneLineErrorsCommand, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Run folder: best.pt, last.pt, metrics.json, split.json, confusion_matrix.png.")
@click.option("--epochs", type=int, default=field_default(TrainConfig, "epochs"), help="Epochs to train (with --resume: the total, counting those done).")
@click.option("--batch-size", type=int, default=field_default(TrainConfig, "batch_size"), help="Global batch size (split across processes under torchrun).")
@click.option("--lr", type=float, default=field_default(TrainConfig, "lr"), help="Adam learning rate.")
@click.option("--image-size", type=int, default=field_default(TrainConfig, "image_size"), help="Network input size (square, >= 32).")
@click.option("--output-stride", type=int, default=field_default(TrainConfig, "output_stride"), help="Backbone output stride: 8 (paper, dilated layer3+4), 16 or 32.")
@click.option("--reduction-channels", type=int, default=field_default(TrainConfig, "reduction_channels"), help="Channels of the 2048->C reductions before PAM/CAM (multiple of 8).")
@click.option("--reduction-kernel", "reduction_kernel_size", type=int, default=field_default(TrainConfig, "reduction_kernel_size"), help="Kernel of those reductions: 3 (DANet) or 1 (cheaper).")
@click.option("--dropout", type=float, default=field_default(TrainConfig, "dropout"), help="Dropout before the classifier.")
@click.option("--val-fraction", type=float, default=field_default(TrainConfig, "val_fraction"), help="Held-out share of every class (ignored for a Kaggle train/ test/ tree).")
@click.option("--seed", type=int, default=field_default(TrainConfig, "seed"), help="Seed of the split, initial weights, shuffling and augmentation.")
@click.option("--device", default=field_default(TrainConfig, "device"), help="auto (cuda if available), cpu, cuda or cuda:N.")
@click.option("--workers", type=int, default=None, help="Image-loading processes [default: min(4, CPU count)].")
@click.option("--backbone-weights", type=click.Path(path_type=Path), default=None, help="Local torchvision ResNet50 state dict (e.g. ImageNet); without it the backbone starts from scratch.")
@click.option("--class-weights", is_flag=True, help="Weight the loss by inverse class frequency.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt (optimizer state included).")
@click.option("--unreadable", default=field_default(TrainConfig, "unreadable"), help="Images that fail to decode: skip (list and leave out) or error (stop).")
@click.option("--strict-dicom", is_flag=True, help="A DICOM whose modality is not CR/DX or body part not the chest is unreadable (see --unreadable), not read with a warning.")
@click.option("--progress/--no-progress", "show_progress", default=field_default(TrainConfig, "show_progress"), help="Progress bars on stderr.")
@verbosity_options
@handle_errors
def train(data_dir: Path, out_dir: Path, **options: object) -> None:
    """Train DA-COVID Net on DATA_DIR: one folder per class (e.g. covid/ normal/ pneumonia/),
    or a Kaggle tree with train/ and test/ folders (test/ is then the evaluation set).

    Defaults are the paper's: Adam, lr 1e-4, batch 48, cross-entropy, 30 epochs, 224x224,
    random crop + horizontal flip. For a class-per-folder tree a seeded, stratified
    --val-fraction of every class is held out; split.json in the run folder lists the files.

    Every image is decoded once before training: unreadable files are listed and left out
    (--unreadable error stops instead); a class left without images is an error.
    On CUDA: mixed precision (bf16, or fp16 with loss scaling; attention kept in FP32) and
    channels_last. Multi-GPU, one process per GPU:

    \b
        torchrun --nproc-per-node N -m dacovid_export train DATA_DIR --out RUN_DIR
    """
    from dacovid_export.train import train_model

    backbone = options.pop("backbone_weights")
    config = TrainConfig(**options, backbone_weights=None if backbone is None else str(backbone))  # type: ignore[arg-type]
    result = train_model(data_dir, out_dir, config)
    if result.rank != 0:
        return
    report = result.best_report
    click.echo(f"best epoch {result.best_epoch} of {result.epochs_completed}: validation accuracy {report.accuracy * 100:.2f}%, loss {result.best_val_loss:.4f}")
    click.echo(report.format_table())
    click.echo(f"best checkpoint: {result.best_checkpoint}")
    click.echo(f"last checkpoint: {result.last_checkpoint}  (continue with --resume)")
    click.echo(f"metrics: {result.metrics_file}; held-out files: {result.split_file}")


def main() -> None:
    train(prog_name="dacovid-train")

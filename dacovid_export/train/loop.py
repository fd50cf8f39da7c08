"""``train_model``: data split, model, Adam + cross-entropy, per-epoch validation, checkpoints and metrics.

What a run folder holds (all written atomically, by rank 0 only under torchrun):

* ``split.json``: the training and held-out files (see :mod:`dacovid_export.train.data`);
* ``best.pt``: the epoch with the highest validation accuracy (ties: lower validation loss);
* ``last.pt``: the latest epoch plus optimizer / loss-scaler state, best-so-far and history, for ``resume``;
* ``metrics.json``: per epoch the losses, accuracies, per-class metrics, confusion matrix and seconds;
* ``confusion_matrix.png``: the best epoch's confusion matrix.

Randomness is a function of ``(seed, epoch)``: the shuffle order, the dropout
seed (per process) and each sample's crop and flip are re-derived every epoch,
so a resumed run continues exactly as an uninterrupted one would, with any
number of data-loading workers.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.core.errors import UserInputError, first_line
from dacovid_export.core.fileio import atomic_write_json
from dacovid_export.core.log import get_logger
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.seeds import epoch_seed
from dacovid_export.data.fingerprint import ImageRecord
from dacovid_export.data.metrics import (
    ClassificationReport,
    classification_report,
    plot_confusion_matrix,
)
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.model.torch_load import LOAD_ERRORS, load_tensors
from dacovid_export.train.amp import AmpPrecision, choose_precision, keep_attention_fp32
from dacovid_export.train.config import TrainConfig
from dacovid_export.train.data import (
    SPLIT_FILENAME,
    DataSplit,
    check_split_files,
    make_split,
    read_split,
    write_split,
)
from dacovid_export.train.dataset import ImageDataset, make_loader
from dacovid_export.train.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    gather_lists,
    init_distributed,
    shutdown,
)
from dacovid_export.train.evaluate import predict
from dacovid_export.train.resume import (
    ResumeState,
    compare_configs,
    read_resume_state,
)

__all__ = ["TrainResult", "train_model", "BEST_NAME", "LAST_NAME", "METRICS_NAME", "CONFUSION_NAME"]

_log = get_logger("train")

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"
METRICS_NAME = "metrics.json"
CONFUSION_NAME = "confusion_matrix.png"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics_file: Path
    split_file: Path
    class_names: tuple[str, ...]
    best_epoch: int
    epochs_completed: int
    best_report: ClassificationReport
    best_val_loss: float
    history: tuple[Mapping[str, Any], ...]
    rank: int = 0  # under torchrun every process returns; only rank 0 should report


@dataclasses.dataclass(frozen=True)
class _Data:
    """The loaders of a run and what re-seeds them every epoch."""

    train_set: ImageDataset
    sampler: RandomSampler | DistributedSampler
    shuffle_gen: torch.Generator | None  # the single-process shuffle; DistributedSampler seeds itself
    train_loader: DataLoader
    val_loader: DataLoader


@dataclasses.dataclass(frozen=True)
class _Session:
    """What every epoch of a run uses, built once before the first."""

    model: nn.Module  # what is trained (DistributedDataParallel under torchrun)
    inner: nn.Module  # the network itself: validated and saved
    precision: AmpPrecision
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler for FP16 autocast, else None
    criterion: nn.Module
    class_names: tuple[str, ...]
    spec: Preprocessing
    training_meta: Mapping[str, Any]
    data: _Data
    image_record: ImageRecord | None = None  # the split's content fingerprints, carried into every checkpoint


@dataclasses.dataclass
class _Record:
    """What the epochs so far have shown: their history and the best one (restored on --resume)."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: dict[str, Any] | None = None
    best_report: ClassificationReport | None = None
    start_epoch: int = 0

    def add(self, entry: dict[str, Any], report: ClassificationReport) -> bool:
        """Append an epoch; whether it is the best so far (higher accuracy, ties: lower validation loss)."""
        self.history.append(entry)
        best = self.best
        is_best = best is None or report.accuracy > best["val_accuracy"] or (
            report.accuracy == best["val_accuracy"] and entry["val_loss"] < best["val_loss"]
        )
        if is_best:
            self.best = {"epoch": entry["epoch"], "val_accuracy": report.accuracy, "val_loss": entry["val_loss"], "report": report.to_dict()}
            self.best_report = report
        return is_best


def train_model(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train DA-COVID Net on a class-per-folder (or Kaggle train/test) tree; write the run into ``out_dir``.

    One line per message on the ``dacovid_export.train`` logger (stderr, around the progress bars).
    Under ``torchrun`` only rank 0 logs and writes files.
    """
    config = config or TrainConfig()
    ctx = init_distributed(config.device)
    try:
        return _Run(Path(data_dir), Path(out_dir), config, ctx).run()
    finally:
        shutdown(ctx)


class _Run:
    """One training run; split into steps so each reads on its own."""

    def __init__(self, data_dir: Path, run_dir: Path, config: TrainConfig, ctx: DistContext) -> None:
        self.data_dir = data_dir
        self.run_dir = run_dir
        self.config = config
        self.ctx = ctx
        self.show_progress = config.show_progress and ctx.is_main
        self.best_path = run_dir / BEST_NAME
        self.last_path = run_dir / LAST_NAME
        self.metrics_path = run_dir / METRICS_NAME
        self.split_path = run_dir / SPLIT_FILENAME
        self.confusion_path = run_dir / CONFUSION_NAME

    def say(self, line: str) -> None:
        """One line on the train logger; under torchrun from rank 0 only, so each is said once."""
        if self.ctx.is_main:
            _log.info(line)

    # ----------------------------------------------------------------- set-up

    def _prepare_run_dir(self) -> ResumeState | None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserInputError(f"--out {str(self.run_dir)!r} is a file, not a folder")
        # before decoding a single image: the run folder must be writable
        check_outputs(inputs=[self.data_dir, self.config.backbone_weights], folders={"--out": self.run_dir})
        if self.config.resume:
            if not self.last_path.is_file():
                raise UserInputError(f"nothing to resume: {str(self.last_path)!r} does not exist")
            state = read_resume_state(self.last_path)
            changes = compare_configs(state.config, self.config)
            if state.epoch >= self.config.epochs:
                raise UserInputError(
                    f"the run in {str(self.run_dir)!r} has already completed {state.epoch} epoch(s); "
                    f"pass --epochs greater than {state.epoch} to train further"
                )
            self.say(f"resuming {str(self.run_dir)!r} after epoch {state.epoch}" + (f" (changed: {'; '.join(changes)})" if changes else ""))
            return state
        if self.last_path.exists() or self.best_path.exists():
            raise UserInputError(
                f"{str(self.run_dir)!r} already holds a training run ({LAST_NAME}/{BEST_NAME}); "
                "pass --resume to continue it or choose another --out folder"
            )
        if self.config.backbone_weights is not None:
            _check_backbone_file(self.config.backbone_weights)
        return None

    def _split(self, resume: ResumeState | None) -> DataSplit:
        if resume is None:
            split = make_split(
                self.data_dir,
                val_fraction=self.config.val_fraction,
                seed=self.config.seed,
                unreadable=self.config.unreadable,
                strict_dicom=self.config.strict_dicom,
                show_progress=self.show_progress,
                say=self.ctx.is_main,
            )
            if self.ctx.is_main:
                write_split(self.split_path, split)
            return split
        split = read_split(self.split_path)
        if self.data_dir.resolve() != split.data_dir:
            raise UserInputError(
                f"cannot resume: the run was trained on {str(split.data_dir)!r}, not {str(self.data_dir.resolve())!r}"
            )
        check_split_files(split)
        recorded = tuple(resume.payload.get("class_names", ()))
        if recorded != split.class_names:
            raise UserInputError(
                f"cannot resume: {LAST_NAME} has classes {list(recorded)} but {SPLIT_FILENAME} has {list(split.class_names)}"
            )
        return split

    def _build_model(self, num_classes: int, resume: ResumeState | None) -> nn.Module:
        from dacovid_export.model import dacovid_net, model_from_payload

        if resume is not None:
            return model_from_payload(resume.payload, repr(str(self.last_path)))
        mc = self.config.model_config(num_classes)
        kwargs = dict(
            num_classes=mc.num_classes,
            output_stride=mc.output_stride,
            reduction_channels=mc.reduction_channels,
            reduction_kernel_size=mc.reduction_kernel_size,
            dropout=mc.dropout,
        )
        # same initial weights on every process and for every run with this seed
        torch.manual_seed(self.config.seed)
        weights = self.config.backbone_weights
        if weights is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = dacovid_net(**kwargs)
            self.say("no --backbone-weights given: the ResNet50 backbone starts from scratch (random initialisation)")
            return model
        try:
            model = dacovid_net(**kwargs, backbone_weights=weights)
        except LOAD_ERRORS as exc:
            raise _backbone_error(weights, exc) from exc
        self.say(f"backbone initialised from {weights!r}")
        return model

    def _class_weights(self, split: DataSplit) -> torch.Tensor | None:
        if not self.config.class_weights:
            return None
        counts = np.array(list(split.counts("train").values()), dtype=np.float64)
        # "balanced" weights: each class contributes as if the classes were equally frequent
        return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)

    # ------------------------------------------------------------------ steps

    def _train_epoch(self, session: _Session, desc: str) -> tuple[float, float, int]:
        """``(mean loss, accuracy, images seen)`` of one pass over the training images, across every process."""
        model, loader, optimizer = session.model, session.data.train_loader, session.optimizer
        criterion, precision, scaler = session.criterion, session.precision, session.scaler
        device = self.ctx.device
        model.train()
        # summed on the device: no host sync per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        with progress_bar(total=len(loader), desc=desc, unit="batch", enabled=self.show_progress) as bar:
            for step, (x, y) in enumerate(loader, 1):
                x = x.to(device, non_blocking=True)  # B x 3 x S x S
                if precision.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = y.to(device, non_blocking=True)  # B
                optimizer.zero_grad(set_to_none=True)
                with precision.autocast():
                    logits = model(x)  # B x K
                loss = criterion(logits.float(), y)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                n = y.shape[0]
                seen += n
                loss_sum += loss.detach().double() * n
                correct += (logits.detach().argmax(dim=1) == y).sum()
                bar.update(1)
                if self.show_progress and (step % 10 == 0 or step == len(loader)):
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}")
        total_loss, total_correct, total_seen = all_reduce_sum(self.ctx, [float(loss_sum), float(correct), float(seen)])
        if not math.isfinite(total_loss):
            raise UserInputError(
                "the training loss is not finite (NaN or inf): lower --lr, or check the images for extreme values"
            )
        return total_loss / total_seen, total_correct / total_seen, int(total_seen)

    def _validate(self, model: nn.Module, loader: DataLoader, precision: AmpPrecision, class_names: tuple[str, ...]) -> tuple[ClassificationReport, float]:
        targets, preds, loss_sum = predict(
            model, loader, device=self.ctx.device, precision=precision, desc="validating", show_progress=self.show_progress
        )
        (loss_sum,) = all_reduce_sum(self.ctx, [loss_sum])
        targets = gather_lists(self.ctx, targets)
        preds = gather_lists(self.ctx, preds)
        return classification_report(targets, preds, class_names), loss_sum / max(1, len(targets))

    # -------------------------------------------------------------------- run

    def run(self) -> TrainResult:
        per_process_batch = self._per_process_batch()
        resume = self._prepare_run_dir()
        split = self._split(resume)
        self._say_data(split)
        model, inner, precision = self._place_model(self._build_model(len(split.class_names), resume))
        self._say_model(inner, precision)
        optimizer = torch.optim.Adam(inner.parameters(), lr=self.config.lr)
        scaler = torch.amp.GradScaler("cuda") if precision.needs_grad_scaler else None
        record = self._restore(optimizer, scaler, resume, split.class_names)
        weights = self._class_weights(split)
        if weights is not None:
            self.say("class weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(split.class_names, weights.tolist())))
        session = _Session(
            model=model,
            inner=inner,
            precision=precision,
            optimizer=optimizer,
            scaler=scaler,
            criterion=nn.CrossEntropyLoss(weight=None if weights is None else weights.to(self.ctx.device)),
            class_names=split.class_names,
            spec=self.config.preprocessing(),
            training_meta=self._training_meta(split, weights, precision),
            data=self._loaders(split, per_process_batch),
            image_record=split.record,
        )
        for epoch in range(record.start_epoch + 1, self.config.epochs + 1):
            self._epoch(session, record, epoch)
        return self._result(record, split.class_names)

    def _per_process_batch(self) -> int:
        cfg, ctx = self.config, self.ctx
        if cfg.batch_size % ctx.world_size:
            raise UserInputError(
                f"batch_size={cfg.batch_size} does not divide among {ctx.world_size} processes: "
                f"use a multiple of {ctx.world_size} (it is the global batch)"
            )
        return cfg.batch_size // ctx.world_size

    def _say_data(self, split: DataSplit) -> None:
        train_counts, val_counts = split.counts("train"), split.counts("val")
        self.say(
            f"data: {split.layout} layout, {len(split.class_names)} classes; "
            + ", ".join(
                f"{n} {train_counts[n]} train / {val_counts[n]} {'test' if split.layout == 'kaggle' else 'val'}"
                for n in split.class_names
            )
            + (f"; {len(split.skipped)} unreadable image(s) skipped" if split.skipped else "")
        )

    def _place_model(self, model: nn.Module) -> tuple[nn.Module, nn.Module, AmpPrecision]:
        """``(model to train, the network inside it, precision)``: on the device, in its memory format, under DDP."""
        ctx = self.ctx
        precision = choose_precision(ctx.device)
        model.to(ctx.device)
        if precision.channels_last:
            model.to(memory_format=torch.channels_last)
        if precision.dtype is not None:
            keep_attention_fp32(model)
        inner = model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            if ctx.device.type == "cuda":
                # per-GPU batches are small (48 / N); BatchNorm statistics over the global batch keep the paper's setting
                inner = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return model, inner, precision

    def _say_model(self, inner: nn.Module, precision: AmpPrecision) -> None:
        cfg, ctx = self.config, self.ctx
        n_params = sum(p.numel() for p in inner.parameters())
        mc = inner.config
        self.say(
            f"model: DA-COVID Net, output stride {mc.output_stride}, reduction {mc.reduction_channels} ch "
            f"{mc.reduction_kernel_size}x{mc.reduction_kernel_size}, dropout {mc.dropout}, {n_params / 1e6:.1f} M parameters; "
            f"input {cfg.image_size}x{cfg.image_size}"
        )
        self.say(
            f"device {ctx.device}, precision {precision.name}"
            + (", channels_last" if precision.channels_last else "")
            + (f", {ctx.world_size} processes (global batch {cfg.batch_size})" if ctx.distributed else f", batch {cfg.batch_size}")
            + f", {cfg.num_workers} loader worker(s)"
        )

    def _restore(
        self, optimizer: torch.optim.Optimizer, scaler: Any, resume: ResumeState | None, class_names: tuple[str, ...]
    ) -> _Record:
        """The optimizer and loss-scaler state, history and best epoch of the run resumed; a fresh record otherwise."""
        if resume is None:
            return _Record()
        try:
            optimizer.load_state_dict(resume.extra["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise UserInputError(f"{str(self.last_path)!r}: optimizer state does not fit the model: {first_line(exc)}") from exc
        for group in optimizer.param_groups:
            group["lr"] = self.config.lr
        if scaler is not None and resume.extra.get("scaler"):
            scaler.load_state_dict(resume.extra["scaler"])
        best = dict(resume.extra["best"]) if resume.extra.get("best") else None
        return _Record(
            history=[dict(h) for h in resume.extra.get("history", [])][: resume.epoch],
            best=best,
            best_report=None if best is None else _report_from_dict(best["report"], class_names),
            start_epoch=resume.epoch,
        )

    def _loaders(self, split: DataSplit, per_process_batch: int) -> _Data:
        cfg, ctx = self.config, self.ctx
        spec = cfg.preprocessing()
        train_set = ImageDataset(split.items("train"), spec, train=True, seed=cfg.seed)
        # each process validates its own interleaved share; predictions are gathered afterwards
        val_set = ImageDataset(split.items("val")[ctx.rank :: ctx.world_size], spec, train=False)
        sampler: RandomSampler | DistributedSampler
        shuffle_gen: torch.Generator | None = None
        if ctx.distributed:
            sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
        else:
            shuffle_gen = torch.Generator()
            sampler = RandomSampler(train_set, generator=shuffle_gen)
        per_process_images = len(sampler)
        if per_process_images < 2:
            raise UserInputError(f"{len(train_set)} training image(s) are too few for {ctx.world_size} process(es)")
        pin = ctx.device.type == "cuda"
        # a trailing batch of one image would give BatchNorm a single sample (an error at 1x1 feature maps)
        train_loader = make_loader(
            train_set,
            batch_size=per_process_batch,
            workers=cfg.num_workers,
            sampler=sampler,
            drop_last=per_process_images % per_process_batch == 1,
            pin_memory=pin,
        )
        val_loader = make_loader(val_set, batch_size=per_process_batch, workers=cfg.num_workers, pin_memory=pin)
        return _Data(train_set, sampler, shuffle_gen, train_loader, val_loader)

    def _training_meta(self, split: DataSplit, weights: torch.Tensor | None, precision: AmpPrecision) -> dict[str, Any]:
        """What every checkpoint and metrics.json of this run records about how it was trained."""
        return {
            "config": self.config.to_dict(),
            "data_dir": str(split.data_dir),
            "layout": split.layout,
            "split_sha256": split.sha256(),
            "train_counts": split.counts("train"),
            "val_counts": split.counts("val"),
            "skipped_images": len(split.skipped),
            "optimizer": "Adam",
            "loss": "cross_entropy" + ("_class_weighted" if weights is not None else ""),
            "class_weights": None if weights is None else weights.tolist(),
            "device": str(self.ctx.device),
            "precision": precision.name,
            "world_size": self.ctx.world_size,
        }

    def _epoch(self, session: _Session, record: _Record, epoch: int) -> None:
        """Train and validate one epoch, record it, write the run folder (rank 0) and say one line."""
        cfg, ctx, data = self.config, self.ctx, session.data
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, epoch, ctx.rank))  # dropout; CUDA generators too
        data.train_set.epoch = epoch
        if isinstance(data.sampler, DistributedSampler):
            data.sampler.set_epoch(epoch)
        elif data.shuffle_gen is not None:
            data.shuffle_gen.manual_seed(epoch_seed(cfg.seed, epoch))
        desc = f"epoch {epoch}/{cfg.epochs}"
        train_loss, train_acc, seen = self._train_epoch(session, desc)
        t_train = time.perf_counter() - t0
        report, val_loss = self._validate(session.inner, data.val_loader, session.precision, session.class_names)
        seconds = time.perf_counter() - t0
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val_loss,
            "val_accuracy": report.accuracy,
            "val_macro_f1": report.macro_f1,
            "val": report.to_dict(),
            "seconds": seconds,
            "train_seconds": t_train,
            "train_images_per_second": seen / t_train if t_train > 0 else 0.0,
            "lr": cfg.lr,
        }
        is_best = record.add(entry, report)
        if ctx.is_main:
            self._write_epoch(session, record, entry, is_best, report)
        self.say(
            f"{desc}  train loss {train_loss:.4f} acc {train_acc * 100:.1f}%  "
            f"val loss {val_loss:.4f} acc {report.accuracy * 100:.1f}%  F1 "
            + " ".join(f"{n} {f:.2f}" for n, f in zip(session.class_names, report.f1))
            + f"  {seconds:.1f} s" + ("  *best*" if is_best else "")
        )
        barrier(ctx)

    def _result(self, record: _Record, class_names: tuple[str, ...]) -> TrainResult:
        best, best_report = record.best, record.best_report
        if best is None or best_report is None:  # cannot happen: _prepare_run_dir ensures epochs > start_epoch
            raise RuntimeError("no epoch was run")
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=self.best_path,
            last_checkpoint=self.last_path,
            metrics_file=self.metrics_path,
            split_file=self.split_path,
            class_names=class_names,
            best_epoch=int(best["epoch"]),
            epochs_completed=self.config.epochs,
            best_report=best_report,
            best_val_loss=float(best["val_loss"]),
            history=tuple(record.history),
            rank=self.ctx.rank,
        )

    def _write_epoch(
        self, session: _Session, record: _Record, entry: Mapping[str, Any], is_best: bool, report: ClassificationReport
    ) -> None:
        """best.pt and its confusion matrix when this epoch is the best, then last.pt and metrics.json."""
        from dacovid_export.model import save_checkpoint

        best = record.best
        if best is None:  # cannot happen: record.add has just run
            raise RuntimeError("an epoch is written before it is recorded")
        epoch = int(entry["epoch"])
        meta = {**session.training_meta, "best_epoch": best["epoch"]}
        common = dict(
            class_names=session.class_names, preprocessing=session.spec, training=meta, metrics=entry, epoch=epoch,
            image_record=session.image_record,
        )
        if is_best:
            save_checkpoint(self.best_path, session.inner, **common)
            plot_confusion_matrix(
                report, self.confusion_path, title=f"epoch {epoch}: validation accuracy {report.accuracy * 100:.1f}%"
            )
        extra = {
            "optimizer": session.optimizer.state_dict(),
            "scaler": session.scaler.state_dict() if session.scaler is not None else {},
            "best": dict(best),
            "history": list(record.history),
            # the generators are re-seeded from these every epoch (see the module docstring)
            "rng": {"seed": self.config.seed, "epoch": epoch, "scheme": "seed_sequence(seed, epoch[, rank])"},
        }
        save_checkpoint(self.last_path, session.inner, **common, extra_state=extra)
        atomic_write_json(
            self.metrics_path,
            {
                "format": "dacovid-metrics",
                "class_names": list(session.class_names),
                "training": dict(meta),
                "best_epoch": best["epoch"],
                "best_val_accuracy": best["val_accuracy"],
                "best_val_loss": best["val_loss"],
                "history": record.history,
            },
        )


def _backbone_error(path: str, exc: BaseException) -> UserInputError:
    if isinstance(exc, ValueError) and "backbone weights" in str(exc):
        return UserInputError(first_line(exc))  # load_backbone_weights' own diagnosis (missing tensors, shapes)
    # torch's text for unreadable pickles suggests weights_only=False, which is exactly what not to do
    return UserInputError(
        f"backbone weights {path!r} are not a torchvision ResNet50 state dict (torch.load(weights_only=True) failed: "
        f"{type(exc).__name__})"
    )


def _check_backbone_file(path: str) -> None:
    """Fail before the image scan, not after it, when the weights file is missing or is no state dict."""
    if not Path(path).is_file():
        raise UserInputError(f"backbone weights {path!r} do not exist or are not a file")
    state = load_tensors(path, lambda exc: _backbone_error(path, exc))
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not any(str(k).removeprefix("module.").startswith("layer4.") for k in state):
        raise UserInputError(f"backbone weights {path!r} are not a torchvision ResNet50 state dict (no layer4 tensors)")


def _report_from_dict(data: Mapping[str, Any], class_names: tuple[str, ...]) -> ClassificationReport:
    """Rebuild a report saved by ``ClassificationReport.to_dict`` (for a resumed run's best epoch)."""
    cm = np.asarray(data["confusion_matrix"], dtype=np.int64)
    true = np.repeat(np.arange(len(class_names)), cm.sum(axis=1))
    pred = np.concatenate([np.repeat(np.arange(len(class_names)), row) for row in cm]) if cm.size else np.zeros(0, np.int64)
    return classification_report(true.tolist(), pred.tolist(), class_names)

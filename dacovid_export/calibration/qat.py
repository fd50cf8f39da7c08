"""Quantization-aware fine-tuning (QAT) for INT8: the checkpoint learns to answer as FP32 does under INT8 rounding.

The method (why not Model Optimizer's PyTorch quantization, what was tried and measured, and what
it costs: docs/design.md section 4, "QAT"):

1. Fold every BatchNorm's scale into the convolution before it (what the ONNX export does), so
   the weights fine-tuned are the weights the INT8 model quantizes; the BatchNorm keeps only
   the folded bias, and the checkpoint keeps its architecture and state-dict keys.
2. Fake-quantize exactly what the INT8 writer quantizes (:class:`FakeQuantizer`): every
   convolution's input (per tensor) and weight (per output channel), the stem MaxPool's input,
   each residual Add's identity branch, the position attention's ``gamma * out`` and output;
   signed symmetric, zero point 0, scale = max |x| / 127 on the calibration images (the ``max``
   calibration the export then runs on the fine-tuned weights; re-measured every epoch so the
   two agree). Attention MatMul/Softmax and the head stay FP32, as in the export. Gradients
   pass straight through the rounding (``torch.fake_quantize_*``).
3. Distil to the FP32 checkpoint itself: KL divergence between the FP32 model's class
   probabilities and the fake-quantized model's (optionally plus the label loss), on
   training images that neither the guard's validation set nor anything else judged holds.
4. Save the fine-tuned FP32 checkpoint; the INT8 model is then written from it by the one
   Q/DQ writer (:mod:`calibration.int8`) under the guard, judged against the ORIGINAL
   checkpoint's FP32 model.

The fine-tune shares training's seed rule (:mod:`core.seeds`) and the project's progress bars and
safe loading (:mod:`model.torch_load`); its resumable state is its own (:mod:`calibration.qat_state`):
train/ sits above this stage, and its ``last.pt`` is a training checkpoint, not a fine-tune's.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.calibration.qat_state import (
    STATE_FORMAT,
    BadQatState,
    load_qat_state,
    save_qat_state,
)
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import sha256_file
from dacovid_export.core.limits import MAX_QAT_EPOCHS, check_batch_size
from dacovid_export.core.log import get_logger
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.seeds import epoch_seed
from dacovid_export.core.text import escape_text
from dacovid_export.core.torch_device import check_device_option
from dacovid_export.core.validate import check_int, check_number

if TYPE_CHECKING:
    import torch

    from dacovid_export.model.checkpoint import CheckpointMetadata

__all__ = [
    "DEFAULT_QAT_EPOCHS",
    "DEFAULT_QAT_LR",
    "DEFAULT_QAT_BATCH_SIZE",
    "QatConfig",
    "QatResult",
    "FakeQuantizer",
    "fold_batchnorms",
    "qat_finetune",
]

_log = get_logger("calibration")

DEFAULT_QAT_EPOCHS = 2
DEFAULT_QAT_LR = 1e-6  # the smallest tried on the cxr3 checkpoint; none tried improved agreement (docs/design.md section 4, "QAT")
DEFAULT_QAT_BATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class QatConfig:
    """Options of the QAT fine-tune, validated on construction.

    ``epochs``/``lr``/``batch_size``: the fine-tune (Adam). ``temperature``: of the distillation
    softmax. ``label_weight``: weight of the cross-entropy on the training labels added to the KL
    term (0: pure distillation, the default: the goal is the FP32 model's answers). ``device``:
    where the fine-tune runs: ``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda``
    or ``cuda:N``; the checkpoint written is the same FP32 file either way.
    """

    epochs: int = DEFAULT_QAT_EPOCHS
    lr: float = DEFAULT_QAT_LR
    batch_size: int = DEFAULT_QAT_BATCH_SIZE
    temperature: float = 1.0
    label_weight: float = 0.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_device_option(self.device, "--qat-device")
        check_int(
            "qat epochs", self.epochs, 1, MAX_QAT_EPOCHS,
            why=f" (default {DEFAULT_QAT_EPOCHS}; each epoch rewrites a state file ~3x the checkpoint)",
        )
        for name in ("lr", "temperature"):
            check_number(f"qat {name}", getattr(self, name), 0, above=True, why=f" (default lr {DEFAULT_QAT_LR:g})")
        check_number("qat label_weight", self.label_weight, 0)
        check_batch_size(self.batch_size, "qat batch_size")
        check_int("qat seed", self.seed, 0)

    @classmethod
    def given(
        cls,
        *,
        seed: int = 0,
        epochs: int | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> "QatConfig":
        """The options given (not ``None``: a flag left unset), this class's own defaults for the rest."""
        chosen = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "device": device}
        return dataclasses.replace(cls(seed=seed), **{k: v for k, v in chosen.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QatResult:
    """What the fine-tune did: the checkpoint written, epochs run here and resumed, the loss per epoch."""

    checkpoint: Path
    epochs: int
    resumed_from_epoch: int
    losses: tuple[float, ...]
    images: int
    quantized_convs: int
    seconds: float
    config: QatConfig
    device: str = "cpu"  # where it ran

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "qat",
            "checkpoint": str(self.checkpoint),
            "epochs": self.epochs,
            "resumed_from_epoch": self.resumed_from_epoch,
            "losses": list(self.losses),
            "images": self.images,
            "quantized_convs": self.quantized_convs,
            "seconds": self.seconds,
            "device": self.device,
            "config": self.config.to_dict(),
        }


def fold_batchnorms(model: "torch.nn.Module") -> int:
    """Fold each BatchNorm2d's scale into the Conv2d registered just before it (same parent); the BatchNorm keeps a bias only.

    The model must be in eval mode (running statistics). Returns the number folded; the
    model computes the same function (up to rounding) and keeps its state-dict keys.
    """
    import torch

    folded = 0
    with torch.no_grad():
        for parent in model.modules():
            children = list(parent.children())
            for conv, bn in zip(children, children[1:]):
                if not (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)):
                    continue
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                new_bias = (bias - bn.running_mean) * scale + bn.bias
                if conv.bias is not None:
                    conv.bias.zero_()
                # the BatchNorm keeps only the folded bias (x + b): same state-dict keys, and the ONNX export
                # folds it into the convolution exactly as before
                bn.weight.fill_(1.0)
                bn.bias.copy_(new_bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                folded += 1
    return folded


class FakeQuantizer:
    """INT8 fake quantization on exactly the tensors the Q/DQ writer quantizes, with its ``max`` scales.

    Placement, read off the writer's output for DA-COVID Net (Model Optimizer's INT8 rules, attention
    chains excluded): every convolution's input (per tensor) and weight (per output channel); the stem
    MaxPool's input; each residual Add's identity branch (the block's input, one Q/DQ shared with the
    block's first convolution, or the downsample's output); and in the position attention both
    ``gamma * out`` and the module's output (an input of the final ``pam + cam`` Add). Any node the
    export quantizes but the fine-tune did not would round where the weights never adapted to it.

    Activation scales are ``max |x| / 127`` over the calibration images of the current weights (what
    the writer's ``max`` calibration computes on the exported model); :meth:`calibrate` measures them.
    """

    def __init__(self, model: "torch.nn.Module") -> None:
        import torch
        from torchvision.models.resnet import BasicBlock, Bottleneck

        from dacovid_export.model.attention import PositionAttention

        self.model = model
        self.convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        self.amax: dict[str, float] = {}
        self.mode = "off"  # "off": plain FP32; "calibrate": record max |x|; "quant": fake-quantize
        self._handles: list[Any] = []
        self._patched: list[torch.nn.Module] = []
        for index, conv in enumerate(self.convs):
            self._patch(conv, self._conv_forward(conv, f"conv{index}"))
        for index, module in enumerate(m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)):
            key = f"maxpool{index}"
            self._handles.append(module.register_forward_pre_hook(lambda _m, args, key=key: (self.point(key, args[0]),)))
        blocks = [m for m in model.modules() if isinstance(m, (Bottleneck, BasicBlock))]
        for index, block in enumerate(blocks):
            key = f"identity{index}"
            if block.downsample is None:
                # the identity is the block's input: quantizing it here is what the shared Q/DQ does, and
                # the first convolution's own input quantizer (same tensor, same scale) is then exact
                self._handles.append(block.register_forward_pre_hook(lambda _m, args, key=key: (self.point(key, args[0]),)))
            else:
                self._handles.append(block.downsample.register_forward_hook(lambda _m, _a, out, key=key: self.point(key, out)))
        for index, pam in enumerate(m for m in model.modules() if isinstance(m, PositionAttention)):
            self._patch(pam, self._pam_forward(pam, f"pam{index}"))
            self._handles.append(pam.register_forward_hook(lambda _m, _a, out, key=f"pam{index}.out": self.point(key, out)))

    def _patch(self, module: "torch.nn.Module", forward: Callable[..., Any]) -> None:
        module.forward = forward  # type: ignore[method-assign]
        self._patched.append(module)

    def point(self, key: str, x: "torch.Tensor") -> "torch.Tensor":
        """One activation quantizer: record its range, or round ``x`` to S8 with the recorded scale."""
        import torch

        if self.mode == "calibrate":
            self.amax[key] = max(self.amax.get(key, 0.0), float(x.detach().abs().max()))
            return x
        if self.mode == "quant":
            return torch.fake_quantize_per_tensor_affine(x, max(self.amax[key], 1e-12) / 127.0, 0, -128, 127)
        return x

    def _conv_forward(self, conv: "torch.nn.Conv2d", key: str) -> Callable[..., Any]:
        import torch

        def forward(x: "torch.Tensor") -> "torch.Tensor":
            if self.mode != "quant":
                return conv._conv_forward(self.point(key, x), conv.weight, conv.bias)
            w = conv.weight
            w_scale = (w.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127.0).float()
            zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
            wq = torch.fake_quantize_per_channel_affine(w, w_scale, zero, 0, -128, 127)
            return conv._conv_forward(self.point(key, x), wq, conv.bias)

        return forward

    def _pam_forward(self, pam: "torch.nn.Module", key: str) -> Callable[..., Any]:
        import torch

        def forward(x: "torch.Tensor") -> "torch.Tensor":
            # PositionAttention.forward with the writer's quantizer on gamma * out (the Add's other input,
            # x, feeds the attention chain and stays FP32)
            q = pam.query(x).flatten(2)
            k = pam.key(x).flatten(2)
            v = pam.value(x).flatten(2)
            attention = torch.softmax(torch.matmul(q.transpose(1, 2), k), dim=-1)
            out = torch.matmul(v, attention.transpose(1, 2))
            return self.point(key + ".scaled", pam.gamma * out.view_as(x)) + x

        return forward

    def calibrate(self, images: np.ndarray, batch: int) -> None:
        """Measure every activation quantizer's ``max |x|`` on ``images`` with the current weights (no rounding)."""
        import torch

        self.amax = {}
        self.mode = "calibrate"
        device = next(self.model.parameters()).device
        try:
            with torch.no_grad():
                for start in range(0, len(images), batch):
                    # a copy: the calibration array is read-only, which torch.from_numpy warns about
                    self.model(torch.from_numpy(np.array(images[start : start + batch], dtype=np.float32)).to(device))
        finally:
            self.mode = "quant"

    def remove(self) -> None:
        """Back to the plain FP32 model."""
        for handle in self._handles:
            handle.remove()
        for module in self._patched:
            module.__dict__.pop("forward", None)
        self._handles, self._patched, self.mode = [], [], "off"


def qat_finetune(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    train_images: np.ndarray,
    calibration_images: np.ndarray,
    config: QatConfig = QatConfig(),
    labels: np.ndarray | None = None,
    state_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    log: Callable[[str], None] | None = None,
    extra_record: dict[str, Any] | None = None,
) -> QatResult:
    """Fine-tune ``checkpoint`` with INT8 fake quantization, distilled to itself; write the FP32 result to ``output``.

    ``train_images``: preprocessed float32 ``N x 3 x S x S`` fine-tuning images (never the guard's
    validation images); ``calibration_images``: for the activation ranges. ``state_path``: the
    resumable state written after every epoch (default ``output`` + ``.qat-state.pt``; removed once
    ``output`` is written); with
    ``resume`` a run continues from it (same config and data, else refused) and ends where an
    uninterrupted one would. ``stop_after_epochs``: stop after this many epochs of this call
    (tests of resume; the state is kept). ``output`` is a checkpoint like the input (BatchNorms
    folded), readable by every command.
    """
    started = time.perf_counter()
    say = log or _log.info
    if not isinstance(config, QatConfig):
        raise UserInputError(f"config of type {type(config).__name__}: give a QatConfig")
    train = np.array(train_images, dtype=np.float32, copy=True)  # writable: torch.from_numpy warns on read-only arrays
    if train.ndim != 4 or len(train) < 1:
        raise UserInputError(f"train_images of shape {train.shape}: give N x 3 x S x S preprocessed images, N >= 1")
    if labels is not None and len(labels) != len(train):
        raise UserInputError(f"{len(labels)} labels for {len(train)} training images")
    output = Path(output)
    state_file = Path(state_path) if state_path is not None else output.with_name(output.name + ".qat-state.pt")
    run = _FineTune.start(checkpoint, config, train, np.array(calibration_images, dtype=np.float32, copy=True), labels)
    if resume and state_file.is_file():
        run.resume(state_file, say)
    resumed_from, done_here = run.epochs_done, 0
    while run.epochs_done < config.epochs and (stop_after_epochs is None or done_here < stop_after_epochs):
        run.epoch(progress)
        done_here += 1
        say(f"qat: epoch {run.epochs_done}/{config.epochs}: mean distillation loss {run.losses[-1]:.5g}")
        save_qat_state(state_file, fingerprint=run.fingerprint, epoch=run.epochs_done, losses=run.losses,
                       model=run.student, optimizer=run.optimizer)
    if run.epochs_done >= config.epochs:
        run.write(output, extra_record)
        # the finished checkpoint is what a rerun reuses; the state (weights + Adam moments, ~3x the checkpoint) is spent
        state_file.unlink(missing_ok=True)
    return QatResult(
        checkpoint=output,
        epochs=run.epochs_done,
        resumed_from_epoch=resumed_from,
        losses=tuple(run.losses),
        images=len(train),
        quantized_convs=len(run.quantizer.convs),
        seconds=time.perf_counter() - started,
        config=config,
        device=str(run.device),
    )


@dataclasses.dataclass
class _FineTune:
    """One fine-tune's working state: the student being trained, the teacher's answers, Adam, the epochs so far."""

    config: QatConfig
    source_sha: str
    meta: "CheckpointMetadata"  # what the written checkpoint carries on
    device: "torch.device"
    student: "torch.nn.Module"
    quantizer: FakeQuantizer
    folded: int
    optimizer: "torch.optim.Optimizer"
    teacher_logits: "torch.Tensor"  # N x classes, on the CPU
    train: np.ndarray
    calibration: np.ndarray
    labels: np.ndarray | None
    fingerprint: dict[str, Any]
    losses: list[float] = dataclasses.field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.losses)

    @classmethod
    def start(
        cls, checkpoint: str | os.PathLike[str], config: QatConfig, train: np.ndarray, calibration: np.ndarray,
        labels: np.ndarray | None,
    ) -> "_FineTune":
        """The teacher's answers on ``train`` (once per image, not per epoch), then the folded, fake-quantized student."""
        import torch

        from dacovid_export.core.torch_device import torch_device
        from dacovid_export.model.checkpoint import load_checkpoint

        source_sha = sha256_file(checkpoint)
        device = torch_device(config.device, "--qat-device")
        teacher, meta = load_checkpoint(checkpoint)
        student, _ = load_checkpoint(checkpoint)
        folded = fold_batchnorms(student)
        teacher.to(device)
        student.to(device)
        student.eval()  # BatchNorms are fixed biases now and dropout stays off: a deterministic fine-tune
        quantizer = FakeQuantizer(student)
        with torch.no_grad():
            teacher_logits = torch.cat(
                [teacher(torch.from_numpy(np.ascontiguousarray(train[s : s + config.batch_size])).to(device)).cpu()
                 for s in range(0, len(train), config.batch_size)]
            )
        data_digest = f"{len(train)}:{float(np.float64(train[:: max(1, len(train) // 16)].sum())):.6e}"
        return cls(
            config, source_sha, meta, device, student, quantizer, folded,
            torch.optim.Adam(student.parameters(), lr=config.lr), teacher_logits, train, calibration, labels,
            {"format": STATE_FORMAT, "source_sha256": source_sha, "config": config.to_dict(), "data": data_digest},
        )

    def resume(self, state_file: Path, say: Callable[[str], None]) -> None:
        """Continue from ``state_file`` when it is this run's; one line and a fresh start otherwise."""
        try:
            state = load_qat_state(state_file, fingerprint=self.fingerprint, epochs=self.config.epochs,
                                   model=self.student, optimizer=self.optimizer)
        except BadQatState as exc:
            # the state is a cache of this run's own progress: one that cannot be used costs epochs, never the run;
            # nothing was loaded from it, so the fresh student and optimizer are untouched
            say(f"qat: QAT state {escape_text(str(state_file))} {exc}: starting over (it is overwritten after epoch 1)")
            return
        self.student.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)  # moves Adam's moments to the parameters' device
        self.losses = list(state.losses)
        say(f"qat: resuming after epoch {state.epoch}/{self.config.epochs} from {state_file}")

    def epoch(self, progress: bool) -> None:
        """One epoch over the training images in this epoch's order; its mean loss is appended to ``losses``."""
        import torch
        import torch.nn.functional as F

        config, epoch = self.config, self.epochs_done
        # the writer calibrates the fine-tuned weights: re-measure the ranges each epoch so the scales
        # trained with are those of the weights being trained (one forward pass over the calibration images)
        self.quantizer.calibrate(self.calibration, config.batch_size)
        # training's seed rule (core.seeds): a resumed run shuffles as the uninterrupted one did
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)))
        batches = [order[s : s + config.batch_size] for s in range(0, len(self.train), config.batch_size)]
        total = 0.0
        bar = progress_bar(total=len(batches), desc=f"qat epoch {epoch + 1}/{config.epochs}", unit="batch",
                           enabled=progress, leave=True)
        for index in batches:
            x = torch.from_numpy(self.train[index.numpy()]).to(self.device)
            logits = self.student(x)
            t = config.temperature
            loss = F.kl_div(
                F.log_softmax(logits / t, dim=1), F.log_softmax(self.teacher_logits[index].to(self.device) / t, dim=1),
                log_target=True, reduction="batchmean",
            ) * (t * t)
            if self.labels is not None and config.label_weight > 0:
                target = torch.as_tensor(self.labels[index.numpy()], device=self.device)
                loss = loss + config.label_weight * F.cross_entropy(logits, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            value = float(loss.detach())  # one device sync a step
            total += value * len(index)
            bar.update(1)
            bar.set_postfix(kl=f"{value:.4g}")
        bar.close()
        self.losses.append(total / len(self.train))

    def write(self, output: Path, extra_record: dict[str, Any] | None) -> None:
        """The fine-tuned FP32 checkpoint, with what the fine-tune did in its training record."""
        from dacovid_export.model.checkpoint import save_checkpoint

        self.quantizer.remove()  # back to the plain model: the checkpoint is FP32 weights that INT8 rounds well
        self.student.to("cpu")  # a checkpoint loads anywhere
        meta = self.meta
        qat = {"source_sha256": self.source_sha, "batchnorms_folded": self.folded,
               "quantized_convs": len(self.quantizer.convs), **self.config.to_dict(), "losses": self.losses,
               **dict(extra_record or {})}
        save_checkpoint(
            output, self.student, class_names=meta.class_names, preprocessing=meta.preprocessing,
            training={**dict(meta.training), "qat": qat}, metrics=dict(meta.metrics), epoch=meta.epoch,
        )


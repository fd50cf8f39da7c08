"""Training options: one frozen dataclass, validated up front. Defaults are the paper's."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Literal

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.validate import check_bool, check_fraction, check_int, check_number, is_int
from dacovid_export.core.limits import check_batch_size, check_image_size
from dacovid_export.data.preprocessing import Preprocessing

if TYPE_CHECKING:
    from dacovid_export.model import ModelConfig

__all__ = ["TrainConfig", "default_workers", "MODEL_OPTIONS", "DATA_OPTIONS"]

UnreadablePolicy = Literal["skip", "error"]

# Options that fix the network or its input: a resumed run must keep them.
MODEL_OPTIONS = ("image_size", "output_stride", "reduction_channels", "reduction_kernel_size", "dropout")
# Options that fix which images are trained and held out: a resumed run must keep them too.
DATA_OPTIONS = ("val_fraction", "seed")

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def default_workers() -> int:
    """DataLoader worker processes when none are given: up to 4, never more than the CPU count."""
    return max(0, min(4, os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything ``dacovid-train`` can be told. Adam + cross-entropy, as the paper.

    ``batch_size`` is the global batch: under ``torchrun`` with N processes each
    takes ``batch_size / N`` images per step, so the optimisation matches a
    single-GPU run with the same options.
    ``workers=None`` means :func:`default_workers`.
    ``unreadable``: ``"skip"`` leaves out (and lists) images that fail to decode,
    ``"error"`` stops at the first one.
    ``strict_dicom``: a DICOM that is not a chest CR/DX is unreadable (skipped or an error, as ``unreadable``
    says) instead of read with a warning.
    """

    epochs: int = 30
    batch_size: int = 48
    lr: float = 1e-4
    image_size: int = 224
    output_stride: int = 8
    reduction_channels: int = 512
    reduction_kernel_size: int = 3
    dropout: float = 0.1
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    backbone_weights: str | None = None
    class_weights: bool = False
    resume: bool = False
    unreadable: UnreadablePolicy = "skip"
    strict_dicom: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1)
        if not is_int(self.batch_size) or self.batch_size < 2:
            raise UserInputError(
                f"batch_size={self.batch_size!r}: must be an integer >= 2 (BatchNorm needs two images per step)"
            )
        check_batch_size(self.batch_size, "batch_size", minimum=2)
        object.__setattr__(self, "lr", check_number("lr", self.lr, 0, above=True, why=" (the paper uses 1e-4)"))
        check_image_size(self.image_size)
        fraction = check_fraction("val_fraction", self.val_fraction, strict=True, why=" (e.g. 0.2 holds out 20% per class)")
        object.__setattr__(self, "val_fraction", fraction)
        check_int("seed", self.seed, 0)
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise UserInputError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.workers is not None:
            check_int("workers", self.workers, 0, why=" (0 loads images in the main process)")
        if self.unreadable not in ("skip", "error"):
            raise UserInputError(f"unreadable={self.unreadable!r}: use 'skip' or 'error'")
        check_bool("strict_dicom", self.strict_dicom)
        if self.backbone_weights is not None:
            object.__setattr__(self, "backbone_weights", os.fspath(self.backbone_weights))
        # the model's own validation, re-raised as a user error with the option's name
        self.model_config()

    @property
    def num_workers(self) -> int:
        return default_workers() if self.workers is None else self.workers

    def model_config(self, num_classes: int = 3) -> "ModelConfig":
        """The :class:`~dacovid_export.model.ModelConfig` these options describe."""
        from dacovid_export.model import ModelConfig

        try:
            return ModelConfig(
                num_classes=num_classes,
                output_stride=self.output_stride,
                reduction_channels=self.reduction_channels,
                reduction_kernel_size=self.reduction_kernel_size,
                dropout=float(self.dropout),
            )
        except (ValueError, TypeError) as exc:
            raise UserInputError(str(exc)) from exc

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(image_size=self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

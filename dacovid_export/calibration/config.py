"""Options of the precision step, validated before any work: precision, calibration images, the INT8 guard, tolerances."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from dacovid_export.calibration.bf16 import Bf16GuardConfig
from dacovid_export.calibration.data import MIN_CALIBRATION_IMAGES
from dacovid_export.calibration.fp16_guard import Fp16GuardConfig
from dacovid_export.calibration.guard import GuardConfig
from dacovid_export.calibration.precisions import (
    PrecisionKind,
    guarded_precisions,
    precision_of,
)
from dacovid_export.calibration.qat import QatConfig
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import same_file
from dacovid_export.core.limits import MAX_IMAGE_COUNT
from dacovid_export.core.validate import as_path, check_bool, check_int
from dacovid_export.data.image_folder import check_image_source
from dacovid_export.export.config import check_seed_and_tolerances

__all__ = ["DEFAULT_CALIB_SIZE", "QAT_OPTIONS", "PrecisionConfig", "check_qat_options"]


DEFAULT_CALIB_SIZE = 256
# the fine-tune's options (PrecisionConfig's and PipelineConfig's fields): meaningless without ``qat``
_PATH_FIELDS = ("calib_data", "cache_dir", "validation_data", "train_data", "training_data")
QAT_OPTIONS = ("qat_epochs", "qat_lr", "qat_batch_size", "qat_device", "train_data")


def check_qat_options(config: Any) -> None:
    """Refuse fine-tune options given without ``qat`` (they would do nothing), naming them as flags."""
    given = [n for n in QAT_OPTIONS if getattr(config, n) is not None]
    if given and not config.qat:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise UserInputError(f"{flags} given without --qat: they set the INT8 model's fine-tune; add --qat or drop them")


@dataclasses.dataclass(frozen=True)
class PrecisionConfig:
    """Options of the precision step, validated on construction.

    ``"bf16"`` writes the FP32 graph marked for BF16 execution (OpenVINO, CPUs with BF16), only
    after the BF16 accuracy guard passed on validation images (``validation_data``, or a
    held-out part of ``calib_data``: the FP16/INT8 split rules).

    ``precision`` ``"fp32"`` means no precision step (then no calibration
    option may be given). ``calib_size``/``calib_method``: ``None`` means the
    default (256, every method the guard tries); they may only be given with a
    precision that uses them. ``atol``/``rtol``: the self-check against the FP32
    model; ``None`` means the precision's own (``calibration.precisions``: ``atol``/``rtol``).
    """

    precision: str = "fp32"
    calib_data: Path | None = None
    calib_size: int | None = None
    calib_method: Literal["entropy", "max"] | None = None
    seed: int = 0
    cache_dir: Path | None = None
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    validation_data: Path | None = None
    qat: bool = False
    qat_epochs: int | None = None
    qat_lr: float | None = None
    qat_batch_size: int | None = None
    qat_device: str | None = None
    train_data: Path | None = None
    # the images that trained the checkpoint, for a checkpoint that carries no record of them (DIR or split.json)
    training_data: Path | None = None

    def __post_init__(self) -> None:
        precision_of(self.precision)  # an unknown name: one line listing the registered ones
        check_seed_and_tolerances(self.seed, self.atol, self.rtol)
        for name in _PATH_FIELDS:
            object.__setattr__(self, name, as_path(getattr(self, name)))
        self._validate_calibration()
        self._validate_guard()
        self._validate_qat()

    def _validate_qat(self) -> None:
        check_bool("qat", self.qat)
        check_qat_options(self)
        if self.qat and not self.kind.quantization_aware:
            raise UserInputError(
                f"qat with precision {self.precision!r}: quantization-aware fine-tuning makes INT8 models (--precision int8)"
            )
        if self.qat:
            self.qat_config()  # QatConfig is the one home of the fine-tune's option rules
        data = self.train_data
        if data is not None:
            check_image_source(data, "train data", "its training part")
        if data is not None and self.validation_data is not None and same_file(data, self.validation_data):
            raise UserInputError(
                f"train data {str(data)!r} is the validation data: the guard must judge on images the fine-tune never "
                "saw; give separate --validation-data (or leave it out: a part of --calib-data is then held out)"
            )

    def qat_train_data(self, checkpoint: str | os.PathLike[str]) -> Path:
        """The fine-tune's images: ``train_data``, else the run's split.json next to ``checkpoint``; one line if neither."""
        if self.train_data is not None:
            return self.train_data
        split = Path(checkpoint).parent / "split.json"
        if split.is_file():
            return split
        raise UserInputError(
            f"--qat needs training images and there is no split.json next to {str(checkpoint)!r}: pass --train-data DIR "
            "(the images the checkpoint was trained on, or a dacovid-train split.json)"
        )

    def qat_config(self) -> QatConfig:
        """The quantization-aware fine-tune's options: QatConfig's own defaults where none was given."""
        return QatConfig.given(
            seed=self.seed, epochs=self.qat_epochs, lr=self.qat_lr, batch_size=self.qat_batch_size, device=self.qat_device
        )

    def _validate_guard(self) -> None:
        given = [n for n in ("min_agreement", "validation_data") if getattr(self, n) is not None]
        if given and self.kind.guard is None:
            guarded = "/".join(str(p.guard) for p in guarded_precisions())
            raise UserInputError(
                f"{', '.join(given)} given with precision {self.precision!r}: the accuracy guard is an {guarded} option"
            )
        if self.validation_data is not None:
            check_image_source(self.validation_data, "validation data", "its held-out part")
        if self.training_data is not None:
            if self.kind.guard is None:
                raise UserInputError(
                    f"training_data given with precision {self.precision!r}: it tells the accuracy guard which "
                    "validation images trained the checkpoint; give it with --precision fp16/int8/bf16"
                )
            check_image_source(self.training_data, "training data", "its training part")

    def _validate_calibration(self) -> None:
        if self.calib_size is not None:
            check_int("calib_size", self.calib_size, MIN_CALIBRATION_IMAGES, MAX_IMAGE_COUNT)
        if self.calib_method is not None and self.calib_method not in ("entropy", "max"):
            raise UserInputError(f"calib_method={self.calib_method!r}: choose 'entropy' or 'max'")
        # the precision's own rules (what it needs, what it refuses): calibration.precisions.<name>.check_options
        self.kind.check_options(self)
        if self.calib_data is not None:
            check_image_source(self.calib_data, "calibration data", "its training part")
        if self.cache_dir is not None and self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise UserInputError(f"cache_dir {str(self.cache_dir)!r} exists and is not a directory")

    @property
    def kind(self) -> PrecisionKind:
        """The registered precision (calibration.precisions) these options are for."""
        return precision_of(self.precision)

    @property
    def effective_calib_size(self) -> int:
        return self.calib_size if self.calib_size is not None else DEFAULT_CALIB_SIZE

    @property
    def effective_calib_method(self) -> str:
        return self.calib_method or "entropy"

    def guard_config(self) -> GuardConfig:
        """The INT8 accuracy guard's options: every calibration method unless one was chosen (also QAT's "before")."""
        config: GuardConfig = precision_of("int8").guard_config(self)
        return config

    def guard_options(self) -> "GuardConfig | Fp16GuardConfig | Bf16GuardConfig | None":
        """This precision's guard options (``None``: unguarded)."""
        return self.kind.guard_config(self)

    @property
    def guarded(self) -> bool:
        """Whether this precision's guard runs: it needs images (``calib_data`` to split, or ``validation_data``)."""
        return self.kind.guarded(self)

    @property
    def tolerance(self) -> tuple[float, float]:
        """(atol, rtol) of the numeric self-check against the FP32 model."""
        atol, rtol = self.kind.tolerance
        return (atol if self.atol is None else float(self.atol), rtol if self.rtol is None else float(self.rtol))

    def given(self) -> tuple[str, ...]:
        """Names of the options set away from their defaults (``precision`` aside), in field order."""
        return tuple(
            f.name
            for f in dataclasses.fields(self)
            if f.name != "precision" and getattr(self, f.name) != f.default
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in _PATH_FIELDS:
            out[name] = None if out[name] is None else str(out[name])
        return out

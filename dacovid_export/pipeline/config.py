"""The pipeline's options: :class:`PipelineConfig`, frozen and validated up front, before minutes of work."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.info import artifact_kind
from dacovid_export.bench.config import BenchConfig
from dacovid_export.calibration.data import MIN_CALIBRATION_IMAGES as MIN_CALIB_SIZE
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_batch_size, check_image_size
from dacovid_export.data.image_folder import check_image_source

if TYPE_CHECKING:
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.model import ModelConfig

__all__ = ["MODEL_OPTION_KEYS", "PARITY_BATCH", "PipelineConfig"]

MODEL_OPTION_KEYS = ("output_stride", "reduction_channels", "reduction_kernel_size")
# parity runs in batches of this size, so every engine's profile must reach it
PARITY_BATCH = 8


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Options of :func:`run_pipeline`, validated on construction.

    ``checkpoint=None`` selects the embedded default; ``image_size`` (default 224)
    and ``model_options`` (``output_stride``, ``reduction_channels``,
    ``reduction_kernel_size``; default the paper's) shape only that default.
    ``images``: a class-per-folder tree for parity (default: synthetic images).
    ``calib_data``: calibration images for INT8 (and FP16's range check); with a
    checkpoint and no ``calib_data`` the INT8 step is skipped rather than
    calibrated on the parity images. ``calib_size``: None = all calibration
    images for the embedded default, the precision step's default otherwise.
    """

    out: Path
    checkpoint: Path | None = None
    images: Path | None = None
    calib_data: Path | None = None
    image_size: int | None = None
    model_options: Mapping[str, int] = dataclasses.field(default_factory=dict)
    batch_sizes: tuple[int, ...] = (1,)
    iterations: int = 10
    warmup: int = 2
    calib_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    progress: bool = True
    serve_env: Path | None = None  # a serving environment: the FP32 and INT8 models are also served and measured
    qat: bool = False
    qat_epochs: int | None = None
    qat_lr: float | None = None
    qat_batch_size: int | None = None
    qat_device: str | None = None
    train_data: Path | None = None
    training_data: Path | None = None  # the checkpoint's training images, where it carries no record of them

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.out.exists() and not self.out.is_dir():
            raise UserInputError(f"--out {str(self.out)!r} exists and is not a folder")
        if self.training_data is not None and self.checkpoint is None:
            raise UserInputError("--training-data names a checkpoint's training images: give --checkpoint too")
        for name in ("checkpoint", "images", "calib_data", "train_data", "training_data"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.checkpoint is not None:
            if not self.checkpoint.is_file():
                raise UserInputError(f"checkpoint {str(self.checkpoint)!r} does not exist or is not a file")
            if artifact_kind(self.checkpoint) != "checkpoint":
                raise UserInputError(
                    f"--checkpoint {str(self.checkpoint)!r} is not a PyTorch checkpoint (.pt/.pth): the pipeline starts "
                    "from the checkpoint and makes the ONNX models and engines itself"
                )
            if self.image_size is not None:
                raise UserInputError(
                    f"--image-size {self.image_size} shapes the embedded default only; the checkpoint fixes its own "
                    "image size: drop --image-size"
                )
            if self.model_options:
                raise UserInputError("model options shape the embedded default only; the checkpoint fixes its own: drop them")
        for name in ("images", "calib_data"):
            value = getattr(self, name)
            if value is not None:
                check_image_source(value, f"--{name.replace('_', '-')}")
        if self.image_size is not None:
            check_image_size(self.image_size)
        for b in self.batch_sizes:
            check_batch_size(b, "batch size")
        options = dict(self.model_options)
        unknown = sorted(set(options) - set(MODEL_OPTION_KEYS))
        if unknown:
            raise UserInputError(f"unknown model option(s) {unknown}: the embedded default takes {', '.join(MODEL_OPTION_KEYS)}")
        try:
            self.model_config()
        except ValueError as exc:
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(f"model options {options}: {exc}") from exc
        object.__setattr__(self, "model_options", options)
        if self.calib_size is not None:
            if isinstance(self.calib_size, bool) or not isinstance(self.calib_size, int) or self.calib_size < MIN_CALIB_SIZE:
                raise UserInputError(f"calib_size={self.calib_size!r}: give an integer >= {MIN_CALIB_SIZE}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserInputError(f"seed={self.seed!r}: give an integer >= 0")
        if self.serve_env is not None:
            object.__setattr__(self, "serve_env", Path(self.serve_env))
            if not self.serve_env.is_dir():
                raise UserInputError(
                    f"--serve-env {str(self.serve_env)!r} is not a folder: make it with 'dacovid-export serve-env DIR'"
                )
        self._validate_qat()
        # the bench options are validated by the bench's own config, now rather than after the exports
        self.bench_config()

    def _validate_qat(self) -> None:
        """The fine-tune's options, its checkpoint and its training images: said before minutes of export."""
        from dacovid_export.calibration.config import check_qat_options

        check_qat_options(self)
        if not self.qat:
            return
        if self.checkpoint is None:
            raise UserInputError(
                "--qat fine-tunes a trained checkpoint on its training images: give --checkpoint (the embedded default "
                "is untrained)"
            )
        if self.calib_data is None:
            raise UserInputError("--qat makes the INT8 model, which needs calibration images: give --calib-data")
        # the precision step's own QAT rules and its training images, now
        self.int8_precision_config(self.calib_data, self.calib_size).qat_train_data(self.checkpoint)

    def int8_precision_config(self, calib_data: Path, calib_size: int | None) -> "PrecisionConfig":
        """The INT8 step's options: its calibration images, the seed and (with ``qat``) the fine-tune's."""
        from dacovid_export.calibration.config import PrecisionConfig

        return PrecisionConfig(
            precision="int8",
            calib_data=calib_data,
            calib_size=calib_size,
            seed=self.seed,
            qat=self.qat,
            qat_epochs=self.qat_epochs,
            qat_lr=self.qat_lr,
            qat_batch_size=self.qat_batch_size,
            qat_device=self.qat_device,
            train_data=self.train_data,
            training_data=self.training_data,
        )

    @property
    def embedded(self) -> bool:
        return self.checkpoint is None

    def model_config(self) -> "ModelConfig":
        from dacovid_export.model import ModelConfig

        return ModelConfig(**self.model_options)

    def bench_config(self) -> BenchConfig:
        return BenchConfig(
            device=self.device,
            batch_sizes=tuple(self.batch_sizes),
            iterations=self.iterations,
            warmup=self.warmup,
            threads=self.threads,
            seed=self.seed,
            progress=self.progress,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("out", "checkpoint", "images", "calib_data", "serve_env", "train_data", "training_data"):
            out[name] = None if out[name] is None else str(out[name])
        out["batch_sizes"] = list(self.batch_sizes)
        out["model_options"] = dict(self.model_options)
        out["embedded_default"] = self.embedded
        return out

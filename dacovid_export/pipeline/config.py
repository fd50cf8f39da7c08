"""The pipeline's options: :class:`PipelineConfig`, frozen and validated up front, before minutes of work."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.info import artifact_kind
from dacovid_export.bench.config import BenchConfig
from dacovid_export.calibration.data import MIN_CALIBRATION_IMAGES
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import MAX_IMAGE_COUNT, check_image_size
from dacovid_export.core.validate import as_path, check_int
from dacovid_export.data.image_folder import check_image_source

if TYPE_CHECKING:
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.qat import QatConfig
    from dacovid_export.model import ModelConfig

__all__ = ["MODEL_OPTION_KEYS", "PARITY_BATCH", "PIPELINE_BENCH", "PipelinePrecision", "PipelineConfig"]

MODEL_OPTION_KEYS = ("output_stride", "reduction_channels", "reduction_kernel_size")
# parity runs in batches of this size, so every engine's profile must reach it
PARITY_BATCH = 8
# the pipeline times a short series per model (its report is a first look; dacovid-bench times longer ones)
PIPELINE_BENCH = BenchConfig(iterations=10, warmup=2)


def _qat_fields(qat: "QatConfig | None") -> dict[str, Any]:
    """A fine-tune as the precision step's (and report.json's) flat ``qat*`` options."""
    return {
        "qat": qat is not None,
        "qat_epochs": None if qat is None else qat.epochs,
        "qat_lr": None if qat is None else qat.lr,
        "qat_batch_size": None if qat is None else qat.batch_size,
        "qat_device": None if qat is None else qat.device,
    }


@dataclasses.dataclass(frozen=True)
class PipelinePrecision:
    """What the pipeline's precision steps (FP16, INT8, BF16) share: a :class:`PrecisionConfig` less its precision.

    ``calib_data``: calibration images for INT8 (and FP16's range check, BF16's guard); with a
    checkpoint and no ``calib_data`` the INT8 step is skipped rather than calibrated on the parity
    images. ``calib_size``: None = all calibration images for the embedded default, the precision
    step's default otherwise. ``training_data``: the checkpoint's training images, where it carries
    no record of them. ``train_data``: the fine-tune's images (with the pipeline's ``qat`` only).
    :meth:`at` makes the one :class:`PrecisionConfig` of each step from these.
    """

    calib_data: Path | None = None
    calib_size: int | None = None
    training_data: Path | None = None
    train_data: Path | None = None

    def __post_init__(self) -> None:
        for name in ("calib_data", "training_data", "train_data"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
        if self.calib_size is not None:
            check_int("calib_size", self.calib_size, MIN_CALIBRATION_IMAGES, MAX_IMAGE_COUNT)
        if self.calib_data is not None:
            check_image_source(self.calib_data, "--calib-data")

    def at(
        self,
        precision: str,
        *,
        seed: int,
        calib_data: Path | None,
        calib_size: int | None,
        qat: "QatConfig | None" = None,
    ) -> "PrecisionConfig":
        """The precision step's options for ``precision``, on the run's images (``calib_data``/``calib_size``: the
        ones :mod:`pipeline.inputs` chose) and seed; ``qat`` (INT8 only): the fine-tune before it."""
        from dacovid_export.calibration.config import PrecisionConfig

        return PrecisionConfig(
            precision=precision,
            calib_data=calib_data,
            calib_size=calib_size,
            seed=seed,
            training_data=self.training_data,
            train_data=None if qat is None else self.train_data,
            **_qat_fields(qat),
        )


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Options of :func:`run_pipeline`, validated on construction.

    ``checkpoint=None`` selects the embedded default; ``image_size`` (default 224)
    and ``model_options`` (``output_stride``, ``reduction_channels``,
    ``reduction_kernel_size``; default the paper's) shape only that default.
    ``images``: a class-per-folder tree for parity (default: synthetic images).
    ``precision``: the precision steps' options (:class:`PipelinePrecision`). ``qat``: make the INT8
    model with this quantization-aware fine-tune (None: calibration only); its seed is the run's.
    ``bench``: the latency step's options (:data:`PIPELINE_BENCH` by default); its ``device``,
    ``batch_sizes``, ``seed`` and ``progress`` are the run's: parity runs there, engine profiles
    reach the largest batch, every step is seeded with ``seed``, and ``progress`` shows steps and bars.
    ``serve_env``: a serving environment: the FP32 and INT8 models are also served and measured.
    """

    out: Path
    checkpoint: Path | None = None
    images: Path | None = None
    image_size: int | None = None
    model_options: Mapping[str, int] = dataclasses.field(default_factory=dict)
    serve_env: Path | None = None
    precision: PipelinePrecision = PipelinePrecision()
    qat: "QatConfig | None" = None
    bench: BenchConfig = PIPELINE_BENCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.out.exists() and not self.out.is_dir():
            raise UserInputError(f"--out {str(self.out)!r} exists and is not a folder")
        for name, kind in (("precision", PipelinePrecision), ("bench", BenchConfig)):
            if not isinstance(getattr(self, name), kind):
                raise UserInputError(f"{name}={getattr(self, name)!r}: give a {kind.__name__}")
        if self.training_data is not None and self.checkpoint is None:
            raise UserInputError("--training-data names a checkpoint's training images: give --checkpoint too")
        for name in ("checkpoint", "images", "serve_env"):
            object.__setattr__(self, name, as_path(getattr(self, name)))
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
        if self.images is not None:
            check_image_source(self.images, "--images")
        if self.image_size is not None:
            check_image_size(self.image_size)
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
        if self.serve_env is not None and not self.serve_env.is_dir():
            raise UserInputError(
                f"--serve-env {str(self.serve_env)!r} is not a folder: make it with 'dacovid-export serve-env DIR'"
            )
        self._validate_qat()

    def _validate_qat(self) -> None:
        """The fine-tune's options, its checkpoint and its training images: said before minutes of export."""
        if self.qat is None:
            if self.precision.train_data is not None:
                raise UserInputError(
                    "--train-data given without --qat: it sets the INT8 model's fine-tune; add --qat or drop it"
                )
            return
        if self.checkpoint is None:
            raise UserInputError(
                "--qat fine-tunes a trained checkpoint on its training images: give --checkpoint (the embedded default "
                "is untrained)"
            )
        if self.calib_data is None:
            raise UserInputError("--qat makes the INT8 model, which needs calibration images: give --calib-data")
        # the precision step's own QAT rules and its training images, now
        step = self.int8_precision_config(self.calib_data, self.calib_size)
        if step.qat_config() != self.qat:
            raise UserInputError(
                f"qat={self.qat!r}: the pipeline's INT8 step fine-tunes with the run's seed ({self.seed}) and the "
                "default temperature and label weight; give epochs, lr, batch size and device only"
            )
        step.qat_train_data(self.checkpoint)

    def int8_precision_config(self, calib_data: Path, calib_size: int | None) -> "PrecisionConfig":
        """The INT8 step's options: its calibration images, the seed and (with ``qat``) the fine-tune's."""
        return self.precision.at("int8", seed=self.seed, calib_data=calib_data, calib_size=calib_size, qat=self.qat)

    # the run-wide options, each with one owner among the nested configs
    @property
    def seed(self) -> int:
        return self.bench.seed

    @property
    def progress(self) -> bool:
        return self.bench.progress

    @property
    def device(self) -> str:
        return self.bench.device

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self.bench.batch_sizes

    @property
    def calib_data(self) -> Path | None:
        return self.precision.calib_data

    @property
    def calib_size(self) -> int | None:
        return self.precision.calib_size

    @property
    def training_data(self) -> Path | None:
        return self.precision.training_data

    @property
    def train_data(self) -> Path | None:
        return self.precision.train_data

    @property
    def embedded(self) -> bool:
        return self.checkpoint is None

    def model_config(self) -> "ModelConfig":
        from dacovid_export.model import ModelConfig

        return ModelConfig(**self.model_options)

    def to_dict(self) -> dict[str, Any]:
        """The options as report.json has always written them: one flat mapping (the nested configs' fields by name)."""

        def text(path: Path | None) -> str | None:
            return None if path is None else str(path)

        return {
            "out": str(self.out),
            "checkpoint": text(self.checkpoint),
            "images": text(self.images),
            "calib_data": text(self.calib_data),
            "image_size": self.image_size,
            "model_options": dict(self.model_options),
            "batch_sizes": list(self.bench.batch_sizes),
            "iterations": self.bench.iterations,
            "warmup": self.bench.warmup,
            "calib_size": self.calib_size,
            "device": self.device,
            "threads": self.bench.threads,
            "seed": self.seed,
            "progress": self.progress,
            "serve_env": text(self.serve_env),
            **_qat_fields(self.qat),
            "train_data": text(self.train_data),
            "training_data": text(self.training_data),
            "embedded_default": self.embedded,
        }

"""What a precision is: one class holding its spec, its ONNX step, its guard and its help, registered once.

A precision (``fp32``, ``fp16``, ``int8``, ``bf16``) is a subclass of :class:`PrecisionKind` in a
module of this package, decorated with :func:`register_precision`; the package finds its modules
itself, so a new precision is one new module (plus its tests). Everything else asks the registry
(:func:`precision_of`, :func:`precision_names`, :func:`engine_precisions`, :func:`guard_report_types`):
the CLI's choices and flags, the self-check's tolerances, parity's criteria, the structural checks,
the metadata keys of the guards' reports, the steps the pipeline runs.

The registry sits in the precision stage (calibration/) because a precision's step and guard are
made of that stage's tools; the stages below it (artifacts, export) know no precision by name.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.validate import check_fraction, check_number

if TYPE_CHECKING:
    import numpy as np

    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.data import CalibrationSet
    from dacovid_export.calibration.qat_record import QatRecord
    from dacovid_export.calibration.result import PrecisionResult

__all__ = [
    "Tolerance",
    "StepInputs",
    "GuardReportType",
    "PrecisionKind",
    "register_precision",
    "precision_of",
    "precision_names",
    "engine_precisions",
    "guarded_precisions",
    "pipeline_precisions",
    "guard_report_types",
    "registered",
]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``check``'s pass criteria for one precision; ``None`` skips a criterion.

    - ``min_agreement``: fraction of inputs whose top-1 class equals the reference's.
    - ``max_logit_rel``: max |logit - reference logit| divided by the reference
      logits' scale (max |reference logit| over all inputs).
    - ``max_prob_diff``: max |softmax probability - reference probability|.
    - ``max_accuracy_drop``: reference accuracy minus model accuracy, as a
      fraction (0.01 = 1 percentage point); checked on labelled inputs only.
    """

    min_agreement: float
    max_logit_rel: float | None = None
    max_prob_diff: float | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self) -> None:
        check_fraction("min_agreement", self.min_agreement, why=" (1.0 = every input)")
        for name in ("max_logit_rel", "max_prob_diff", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None:
                check_number(name, value, 0, why=", or None to skip this criterion")

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StepInputs:
    """What a precision's step gets: the FP32 model, where to write, the options and the images (``None``: none)."""

    fp32_path: Path
    raw: Path  # the scratch file the step writes
    config: "PrecisionConfig"
    calibration: "CalibrationSet | None"
    validation: "CalibrationSet | None"
    progress: bool
    reference: Path | None = None  # QAT: the original checkpoint's FP32 model the guard judges against
    qat: "QatRecord | None" = None  # QAT: the fine-tune's record
    qat_hint: str | None = None  # INT8 without QAT: how this user turns it on, for a refusal
    labels: "np.ndarray | None" = None  # the validation images' class indices, where they have labels
    output: Path | None = None  # the file the model is published as: what reports name (``raw`` is a scratch copy)


class GuardReportType(Protocol):
    """A guard's report class: the metadata key it is written under, and how it is read back."""

    METADATA_KEY: ClassVar[str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any: ...


class PrecisionKind(abc.ABC):
    """One precision. Subclasses set the class attributes and, when the precision step makes it, :meth:`make`.

    ``atol``/``rtol``: the default numeric self-check of the written model against FP32 (allowed
    max |diff| = atol + rtol * max|reference logit|). ``logits_gate``: that tolerance refuses the
    model; ``False``: the guard's agreement is the one gate and the logit difference is reported.
    ``parity``: ``check``'s criteria. ``checked_with``: the runtime the self-check runs the written
    model with. ``attention_fp32``/``requires_qdq``: the structural rules of its graph.
    ``guard``: the accuracy guard's name in messages (``None``: unguarded); ``guard_report``: its
    report class. ``needs_images``: the step refuses to run without images. ``engine_help``: the
    help of ``trt --<name>`` (``None``: no engine of this precision). ``order``: where it is listed.
    ``pipeline_step``: the pipeline's name for the step that makes it (``None``: the pipeline does not);
    ``pipeline_extra``: a model the pipeline user did not ask for, so this machine lacking it or its guard
    refusing it is a skip, not a failure; ``no_images_skip``: why the pipeline skips it without images.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    summary: ClassVar[str]  # one clause of ``onnx --precision``'s help
    atol: ClassVar[float]
    rtol: ClassVar[float]
    parity: ClassVar[Tolerance]
    made_by_step: ClassVar[bool] = True
    logits_gate: ClassVar[bool] = True
    checked_with: ClassVar[str] = "onnxruntime"
    attention_fp32: ClassVar[bool] = False
    requires_qdq: ClassVar[bool] = False
    guard: ClassVar[str | None] = None
    guard_report: ClassVar[type | None] = None
    needs_images: ClassVar[bool] = False
    engine_help: ClassVar[str | None] = None
    producer_tool: ClassVar[str] = "nvidia-modelopt"
    # options only this precision takes (PrecisionConfig field names)
    calibration_method: ClassVar[bool] = False  # calib_method and cache_dir
    quantization_aware: ClassVar[bool] = False  # qat
    # no engine: what the model is instead (after its path, when it is given to trt) and the note on trt's refusal
    no_engine_reason: ClassVar[str] = ""
    no_engine_note: ClassVar[str] = ""
    pipeline_step: ClassVar[str | None] = None
    pipeline_extra: ClassVar[bool] = False
    no_images_skip: ClassVar[str] = ""

    @property
    def engine(self) -> bool:
        return self.engine_help is not None

    @property
    def tolerance(self) -> tuple[float, float]:
        return (self.atol, self.rtol)

    def preflight(self) -> None:
        """What this machine must have before any work (e.g. a CPU that runs BF16), raised as one line."""

    def check_options(self, config: "PrecisionConfig") -> None:
        """The precision's own rules on ``config`` (beyond the shared ones), raised as :class:`UserInputError`."""

    def guard_config(self, config: "PrecisionConfig") -> Any:
        """The guard's validated options for ``config`` (``None``: unguarded)."""
        return None

    def guarded(self, config: "PrecisionConfig") -> bool:
        """Whether the guard will run: it needs images."""
        return self.guard is not None and (config.calib_data is not None or config.validation_data is not None)

    def unguarded_note(self) -> tuple[str, ...]:
        """What the report says when the model was written without its guard."""
        return ()

    def model_line(self, fp32_nodes: tuple[str, ...]) -> str:
        """The pipeline report's line on the written model: what stayed FP32."""
        shown = ", ".join(fp32_nodes[:12]) + (f", ... ({len(fp32_nodes)} in all)" if len(fp32_nodes) > 12 else "")
        return f"{self.name.upper()} model: {len(fp32_nodes)} node(s) kept in FP32: {shown or 'none'}"

    def make(self, x: StepInputs) -> "PrecisionResult":
        """Write the model of this precision made from ``x.fp32_path`` to ``x.raw``."""
        raise UserInputError(f"precision {self.name!r} is not made by the precision step")

    def __repr__(self) -> str:
        return f"<precision {self.name}>"


_REGISTRY: dict[str, PrecisionKind] = {}
_LOADED: list[bool] = []


def _load_modules() -> None:
    """Import every module of this package once: each registers its precision as it is defined.

    By name, found on disk: the precision modules import this one, so it cannot import them at its
    top, and a new precision needs no line here.
    """
    if _LOADED:
        return
    _LOADED.append(True)
    package = __name__.rpartition(".")[0]
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name != "base":
            importlib.import_module(f"{package}.{module.name}")


def register_precision(cls: type[PrecisionKind]) -> type[PrecisionKind]:
    """Class decorator: add a precision to the registry (once; a second class of the same name is refused)."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"precision {cls.name!r} registered twice ({type(_REGISTRY[cls.name]).__name__}, {cls.__name__})")
    _REGISTRY[cls.name] = cls()
    return cls


def registered() -> tuple[PrecisionKind, ...]:
    """Every precision, in listing order (the package imports its modules first)."""
    _load_modules()

    return tuple(sorted(_REGISTRY.values(), key=lambda p: p.order))


def precision_names() -> tuple[str, ...]:
    return tuple(p.name for p in registered())


def precision_of(name: str) -> PrecisionKind:
    """The registered precision ``name``; a one-line error listing the known ones otherwise."""
    names = precision_names()  # loads the modules
    if name not in _REGISTRY:
        raise UserInputError(f"precision={name!r}: choose one of {', '.join(names)}")
    return _REGISTRY[name]


def engine_precisions() -> tuple[str, ...]:
    """The precisions ``trt`` builds engines of, in flag order."""
    return tuple(p.name for p in registered() if p.engine)


def pipeline_precisions() -> tuple[PrecisionKind, ...]:
    """The precisions the pipeline makes from its FP32 export, in order."""
    return tuple(p for p in registered() if p.pipeline_step is not None)


def guarded_precisions() -> tuple[PrecisionKind, ...]:
    return tuple(p for p in registered() if p.guard is not None)


def guard_report_types() -> tuple[type, ...]:
    """The guards' report classes, each with the metadata (and report.json) key it is written under."""
    return tuple(p.guard_report for p in registered() if p.guard_report is not None)

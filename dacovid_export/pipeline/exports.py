"""The pipeline's ONNX steps: the FP32 export, then one step per precision the registry has the pipeline make (FP16,
INT8, and the guarded BF16 model on CPUs with BF16), each described for the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import convert_precision, export_at_precision
from dacovid_export.calibration.precisions import pipeline_precisions
from dacovid_export.calibration.step_metadata import GUARD_KEYS
from dacovid_export.core.errors import (
    CheckFailedError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.progress import StepTimer
from dacovid_export.export.config import OnnxExportConfig
from dacovid_export.export.onnx_export import export_onnx
from dacovid_export.pipeline.config import PipelineConfig
from dacovid_export.pipeline.inputs import PipelineInputs
from dacovid_export.pipeline.outcomes import FailedStep, SkippedStep

if TYPE_CHECKING:
    from dacovid_export.calibration.precisions import PrecisionKind
    from dacovid_export.export.result import OnnxExportResult

__all__ = ["ONNX_STEPS", "OnnxRecord", "OnnxModels", "make_onnx_models"]

# the steps make_onnx_models times, in order (the pipeline numbers them): the export, then one per precision the
# registry says the pipeline makes
ONNX_STEPS = ("ONNX FP32 export", *(str(p.pipeline_step) for p in pipeline_precisions()))


@dataclasses.dataclass(frozen=True)
class OnnxRecord:
    """One ONNX model the pipeline made: the export or precision step's own result, shown in report.json through its
    ``to_dict`` (the file, checks, numerics, FP32 nodes and the accuracy guard's report under its metadata key)."""

    result: "OnnxExportResult"

    # what report.json keeps of OnnxExportResult.to_dict (the ONNX metadata and tool details stay in the file)
    REPORT_KEYS: ClassVar[tuple[str, ...]] = (
        "path", "precision", "size_bytes", "sha256", "timings", "fp32_nodes", "histogram", "checks", "verification",
        *GUARD_KEYS,
    )

    @classmethod
    def of(cls, result: "OnnxExportResult") -> "OnnxRecord":
        return cls(result)

    @property
    def fp32_nodes(self) -> tuple[str, ...]:
        return tuple(self.result.fp32_nodes)

    @property
    def guard(self) -> Any:
        """The accuracy guard's report (typed; its ``lines()`` render it), or ``None``."""
        return self.result.guard

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict()
        return {k: out[k] for k in self.REPORT_KEYS if k in out}


@dataclasses.dataclass(frozen=True)
class OnnxModels:
    """The ONNX models made (precision -> path, FP32 first) and what each step left behind."""

    paths: Mapping[str, Path]
    records: Mapping[str, OnnxRecord]
    skipped: tuple[SkippedStep, ...]
    failed: tuple[FailedStep, ...]


def make_onnx_models(inputs: PipelineInputs, config: PipelineConfig, timer: StepTimer) -> OnnxModels:
    """FP32 export (must succeed), then each precision the registry has the pipeline make: a refused one is recorded
    (a failure, or a skip for an extra the user did not ask for) and the pipeline goes on."""
    paths: dict[str, Path] = {}
    records: dict[str, OnnxRecord] = {}
    skipped: list[SkippedStep] = []
    failed: list[FailedStep] = []
    with timer.step(ONNX_STEPS[0]):
        result = export_onnx(inputs.checkpoint, config.out / "model.onnx", OnnxExportConfig(), progress=config.progress)
    paths["fp32"] = result.path
    records["fp32"] = OnnxRecord.of(result)
    for kind in pipeline_precisions():
        name = str(kind.pipeline_step)
        with timer.step(name):
            made = _precision_model(kind, name, paths["fp32"], inputs, config)
            if isinstance(made, SkippedStep):
                skipped.append(made)
            elif isinstance(made, FailedStep):
                timer.note(f"failed: {made.reason}")
                failed.append(_with_pipeline_hint(made, kind, inputs, config))
            else:
                paths[kind.name] = made.path
                records[kind.name] = OnnxRecord.of(made)
    return OnnxModels(paths, records, tuple(skipped), tuple(failed))


def _precision_model(
    kind: "PrecisionKind", name: str, fp32: Path, inputs: PipelineInputs, config: PipelineConfig
) -> "OnnxExportResult | SkippedStep | FailedStep":
    """The model of precision ``kind``, or why the pipeline has none: this machine cannot make it (a skip), no images
    for a step that needs them (a skip), or its checks refused it (a failure; a skip for an extra)."""
    try:
        kind.preflight()
    except (UserInputError, MissingDependencyError) as exc:
        return SkippedStep(name, str(exc))
    if kind.needs_images and inputs.calib_data is None:
        return SkippedStep(name, kind.no_images_skip or f"no images: give --calib-data DIR to make the {name} model")
    output = config.out / f"model.{kind.name}.onnx"
    options = _precision_config(kind, inputs, config)
    try:
        if options.qat:
            # QAT fine-tunes the checkpoint's weights (an ONNX model's are frozen): the onnx --qat path, which judges
            # the fine-tuned model against this checkpoint's FP32 export
            return export_at_precision(inputs.checkpoint, output, OnnxExportConfig(), options, progress=config.progress)
        return convert_precision(fp32, output, options, progress=config.progress)
    except CheckFailedError as exc:
        if kind.pipeline_extra:
            return SkippedStep(name, f"refused by the {kind.guard or kind.name.upper()} guard: {exc}")
        return FailedStep.of(name, exc)


def _with_pipeline_hint(
    step: FailedStep, kind: "PrecisionKind", inputs: PipelineInputs, config: PipelineConfig
) -> FailedStep:
    """A guard's refusal of a precision QAT can help, without --qat: the next thing to try is this command with --qat."""
    if not kind.quantization_aware or config.qat or step.error != "GuardFailedError":
        return step
    if config.embedded:
        hint = "quantization-aware fine-tuning needs a trained checkpoint: pipeline --checkpoint CKPT ... --qat"
    else:
        data = (
            "the split.json beside it" if (inputs.checkpoint.parent / "split.json").is_file()
            else "its training images: add --train-data DIR too"
        )
        hint = f"run this pipeline command again with --qat added (fine-tunes {inputs.checkpoint} on {data})"
    return dataclasses.replace(step, reason=f"{step.reason}\nIn the pipeline: {hint}")


def _precision_config(kind: "PrecisionKind", inputs: PipelineInputs, config: PipelineConfig) -> PrecisionConfig:
    """The precision step's options for one of the pipeline's models, on the run's calibration images: a
    quantization-aware precision with ``qat`` fine-tunes first."""
    return config.precision.at(
        kind.name, seed=config.seed, calib_data=inputs.calib_data, calib_size=inputs.calib_size,
        qat=config.qat if kind.quantization_aware else None,
    )

"""The pipeline's ONNX steps: the FP32 export, then the FP16 and INT8 conversions and the guarded BF16 model (CPUs
with BF16 only), each described for the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import convert_precision, export_at_precision
from dacovid_export.calibration.step_metadata import GUARD_KEYS
from dacovid_export.core.errors import CheckFailedError
from dacovid_export.core.progress import StepTimer
from dacovid_export.export.config import OnnxExportConfig
from dacovid_export.export.onnx_export import export_onnx
from dacovid_export.pipeline.config import PipelineConfig
from dacovid_export.pipeline.inputs import PipelineInputs
from dacovid_export.pipeline.outcomes import FailedStep, SkippedStep

if TYPE_CHECKING:
    from dacovid_export.export.result import OnnxExportResult

__all__ = ["ONNX_STEPS", "OnnxRecord", "OnnxModels", "make_onnx_models"]

# the steps make_onnx_models times, in order (the pipeline numbers them)
ONNX_STEPS = ("ONNX FP32 export", "ONNX FP16 conversion", "ONNX INT8 conversion", "ONNX BF16 (guarded)")


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
    """FP32 export (must succeed), then FP16 and INT8 (may fail their checks: recorded, and the pipeline goes on)."""
    paths: dict[str, Path] = {}
    records: dict[str, OnnxRecord] = {}
    skipped: list[SkippedStep] = []
    failed: list[FailedStep] = []
    with timer.step(ONNX_STEPS[0]):
        result = export_onnx(inputs.checkpoint, config.out / "model.onnx", OnnxExportConfig(), progress=config.progress)
    paths["fp32"] = result.path
    records["fp32"] = OnnxRecord.of(result)
    for precision, name in (("fp16", ONNX_STEPS[1]), ("int8", ONNX_STEPS[2])):
        with timer.step(name):
            if precision == "int8" and inputs.calib_data is None:
                skipped.append(
                    SkippedStep(
                        name,
                        "no calibration images: give --calib-data DIR (training images, not the parity set) "
                        "to make the INT8 model",
                    )
                )
                continue
            try:
                if precision == "int8" and config.qat:
                    # QAT fine-tunes the checkpoint's weights (an ONNX model's are frozen): the onnx --qat path, which
                    # judges the fine-tuned INT8 model against this checkpoint's FP32 export
                    result = export_at_precision(
                        inputs.checkpoint,
                        config.out / "model.int8.onnx",
                        OnnxExportConfig(),
                        _precision_config(precision, inputs, config),
                        progress=config.progress,
                    )
                else:
                    result = convert_precision(
                        paths["fp32"],
                        config.out / f"model.{precision}.onnx",
                        _precision_config(precision, inputs, config),
                        progress=config.progress,
                    )
            except CheckFailedError as exc:
                failed.append(_with_pipeline_hint(FailedStep.of(name, exc), precision, inputs, config))
                timer.note(f"failed: {exc}")
                continue
        paths[precision] = result.path
        records[precision] = OnnxRecord.of(result)
    with timer.step(ONNX_STEPS[3]):
        bf16 = _bf16_model(paths["fp32"], inputs, config)
    if isinstance(bf16, SkippedStep):
        skipped.append(bf16)
    else:
        paths["bf16"] = bf16.path
        records["bf16"] = OnnxRecord.of(bf16)
    return OnnxModels(paths, records, tuple(skipped), tuple(failed))


def _with_pipeline_hint(step: FailedStep, precision: str, inputs: PipelineInputs, config: PipelineConfig) -> FailedStep:
    """An INT8 refusal without --qat: in the pipeline, the next thing to try is this same command with --qat."""
    if precision != "int8" or config.qat or step.error != "GuardFailedError":
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


def _bf16_model(fp32: Path, inputs: PipelineInputs, config: PipelineConfig) -> "OnnxExportResult | SkippedStep":
    """The BF16-marked model where the CPU has BF16 and its guard passes; otherwise why not.

    A guard refusal is recorded as a skip, not a failure: BF16 is an extra the user never asked
    for here (``dacovid-export onnx --precision bf16`` asks), and refusing it is the guard working.
    """
    from dacovid_export.calibration.bf16 import require_bf16_cpu
    from dacovid_export.core.errors import MissingDependencyError, UserInputError

    name = ONNX_STEPS[3]
    try:
        require_bf16_cpu()
    except (UserInputError, MissingDependencyError) as exc:
        return SkippedStep(name, str(exc))
    if inputs.calib_data is None:
        return SkippedStep(name, "no images for the BF16 guard: give --calib-data DIR (a part is held out to judge BF16)")
    try:
        return convert_precision(
            fp32, config.out / "model.bf16.onnx", _precision_config("bf16", inputs, config), progress=config.progress
        )
    except CheckFailedError as exc:
        return SkippedStep(name, f"refused by the BF16 guard: {exc}")


def _precision_config(precision: str, inputs: PipelineInputs, config: PipelineConfig) -> PrecisionConfig:
    """The precision step's options for one of the pipeline's models, on the run's calibration images: INT8 with
    ``qat`` fine-tunes first."""
    return config.precision.at(
        precision, seed=config.seed, calib_data=inputs.calib_data, calib_size=inputs.calib_size,
        qat=config.qat if precision == "int8" else None,
    )

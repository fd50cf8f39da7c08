"""The precision step: an FP32 ONNX model made by this tool -> a self-checked FP16, INT8 or BF16 one.

FP16 is Model Optimizer AutoCast with the attention kept FP32 (:mod:`.fp16`);
INT8 is explicit Q/DQ under the accuracy guard (:mod:`.guard`); BF16 is the FP32 graph,
unchanged, marked for BF16 execution by OpenVINO once the BF16 guard passed (:mod:`.bf16`),
and compared as OpenVINO runs it (ONNX Runtime refuses a BF16-marked model). The result
carries the FP32 file's metadata (classes, preprocessing, checkpoint checksum)
plus what the step did, passes the structural checks of its precision, and is
compared with the FP32 model in ONNX Runtime before it is written.
:func:`export_at_precision` is the whole ``dacovid-export onnx`` command:
the FP32 export, then this step. Each job has its module: the precisions and their steps
(:mod:`.precisions`), the images (:mod:`.step_images`), QAT (:mod:`.qat_step`), the metadata
stamped on the result (:mod:`.step_metadata`) and the numeric self-check (:mod:`.self_check`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.onnx_metadata import (
    info_from_model,
    load_onnx,
    metadata_of,
    read_metadata,
    read_onnx_info,
    write_metadata,
)
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.data import CalibrationSet, image_labels
from dacovid_export.calibration.precisions import StepInputs, registered
from dacovid_export.calibration.qat_record import QatRecord
from dacovid_export.calibration.qat_step import (
    convert_hint,
    prepare_qat,
    qat_checkpoint_path,
    qat_command,
)
from dacovid_export.calibration.self_check import checked_runtime, verify_against_fp32
from dacovid_export.calibration.step_images import (
    check_step_inputs,
    checkpoint_record,
    image_sets,
    model_record,
)
from dacovid_export.calibration.step_metadata import precision_metadata
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import scratch_dir
from dacovid_export.core.progress import StepTimer
from dacovid_export.core.torch_device import torch_device
from dacovid_export.data.agreement import check_numeric
from dacovid_export.export.checks import run_structural_checks, validate_model
from dacovid_export.export.config import (
    MAX_OPSET,
    MIN_OPSET,
    OnnxExportConfig,
    verify_batches,
)
from dacovid_export.export.files import publish, save_onnx
from dacovid_export.export.onnx_export import export_onnx
from dacovid_export.export.result import OnnxExportResult, written_result

__all__ = ["convert_precision", "export_at_precision"]


def export_at_precision(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    export: OnnxExportConfig = OnnxExportConfig(),
    precision: PrecisionConfig = PrecisionConfig(),
    *,
    progress: bool = False,
) -> OnnxExportResult:
    """``dacovid-export onnx``: the FP32 export, then (for FP16/INT8) the precision step into ``output``.

    Every input and option is checked before the FP32 export starts (a wrong
    calibration folder is found now, not after minutes of export).
    """
    if not precision.kind.made_by_step:
        return export_onnx(checkpoint, output, export, progress=progress)
    precision.kind.preflight()  # before the FP32 export: e.g. a CPU without BF16, where the guard could measure nothing
    output = check_step_inputs(output, checkpoint, precision, record=checkpoint_record(checkpoint, precision))
    train_data = precision.qat_train_data(checkpoint) if precision.qat else None
    if train_data is not None:
        # checkable without work, so checked before the FP32 export: where the fine-tune runs, and that the
        # fine-tuned checkpoint it writes destroys no input
        torch_device(precision.qat_config().device, "--qat-device")
        check_outputs(inputs=[checkpoint, precision.calib_data, precision.validation_data, train_data],
                      files={"--qat checkpoint": qat_checkpoint_path(output)})
    with scratch_dir(output) as scratch:
        fp32 = export_onnx(checkpoint, scratch / "model.fp32.onnx", export, progress=progress)
        if train_data is not None:
            qat = prepare_qat(checkpoint, fp32.path, output, export, precision, train_data, scratch, progress)
            info = read_onnx_info(fp32.path)
            batches = verify_batches(info.max_batch, info.extra.get("suggested_max_batch"))
            with StepTimer(progress, total=3, bar=True) as steps:
                step = _convert(
                    qat.tuned_fp32, output, precision, batches, steps, reference=fp32.path, qat=qat.record,
                    sets=(qat.calibration, qat.validation),
                )
        else:
            step = _convert_checked(
                fp32.path, output, precision, progress, images_checked=True, qat_hint=qat_command(checkpoint, output, precision)
            )
    return _after_export(fp32, step)


def _after_export(fp32: OnnxExportResult, step: OnnxExportResult) -> OnnxExportResult:
    """The precision step's result with the FP32 export's checks and timings in front (one total for both)."""
    timings = {k: v for r in (fp32, step) for k, v in r.timings.items() if k != "total"}
    return dataclasses.replace(
        step,
        verification={**fp32.verification, **step.verification},
        timings={**timings, "total": sum(timings.values())},
    )


def convert_precision(
    fp32_onnx: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: PrecisionConfig,
    *,
    progress: bool = False,
) -> OnnxExportResult:
    """Turn an FP32 ONNX model written by this tool into an FP16, INT8 or BF16 one at ``output``.

    ``config`` (validated when it was made) says which precision and with what images and guard.
    INT8 is accuracy-guarded (:mod:`dacovid_export.calibration.guard`): it must agree with
    the FP32 model on ``min_agreement`` (default 0.99) of validation images calibration never
    saw (``validation_data``, or by default a seeded, stratified part of ``calib_data``),
    taking the costliest nodes out of INT8 if needed, or nothing is written.

    The metadata (classes, preprocessing, checkpoint checksum) comes from the
    FP32 file. The result gets the structural checks that apply to its precision
    and is compared with the FP32 model in ONNX Runtime, on the calibration
    images when given, on seeded synthetic inputs otherwise.
    """
    info = read_onnx_info(fp32_onnx)  # a broken or foreign file is the first thing to say, before any option
    if not isinstance(config, PrecisionConfig):
        raise UserInputError(f"config must be a PrecisionConfig, got {type(config).__name__}")
    if not config.kind.made_by_step:
        made = [repr(p.name) for p in registered() if p.made_by_step]
        raise UserInputError(
            f"precision={config.precision!r}: convert_precision makes {', '.join(made[:-1])} or {made[-1]} models"
        )
    if config.qat:
        # QAT fine-tunes the checkpoint's weights; an ONNX model's are frozen
        raise UserInputError("qat fine-tunes a checkpoint: use export_at_precision (dacovid-export onnx --qat)")
    return _convert_checked(fp32_onnx, output, config, progress, info, qat_hint=convert_hint(info))


def _convert_checked(
    fp32_onnx: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: PrecisionConfig,
    progress: bool,
    info: ArtifactInfo | None = None,
    *,
    images_checked: bool = False,
    qat_hint: str | None = None,
) -> OnnxExportResult:
    """The precision step on a validated ``config``, after checking the source model, the output and (unless done) the images."""
    info = info if info is not None else read_onnx_info(fp32_onnx)
    if info.precision != "fp32":
        raise UserInputError(
            f"{str(fp32_onnx)!r} is a {info.precision} model; the precision step starts from the FP32 export"
        )
    opset = info.extra.get("opset")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserInputError(
            f"{str(fp32_onnx)!r} uses opset {opset}; the precision step needs {MIN_OPSET}..{MAX_OPSET}: re-export it"
        )
    batches = verify_batches(info.max_batch, info.extra.get("suggested_max_batch"))
    config.kind.preflight()
    record = None if images_checked else model_record(read_metadata(fp32_onnx), fp32_onnx, config)
    output = check_step_inputs(output, fp32_onnx, config, images=not images_checked, record=record)
    with StepTimer(progress, total=3, bar=True) as steps:
        return _convert(Path(fp32_onnx), output, config, batches, steps, qat_hint=qat_hint)


def _convert(
    fp32_path: Path,
    output: Path,
    config: PrecisionConfig,
    batches: tuple[int, ...],
    steps: StepTimer,
    *,
    reference: Path | None = None,
    qat: QatRecord | None = None,
    sets: tuple[CalibrationSet | None, CalibrationSet | None] | None = None,
    qat_hint: str | None = None,
) -> OnnxExportResult:
    fp32_proto = load_onnx(fp32_path)
    info = info_from_model(fp32_proto, fp32_path)
    fp32_meta = metadata_of(fp32_proto)
    del fp32_proto  # up to ~170 MB of weights; the tools below read the file themselves
    timings: dict[str, float] = {}
    steps.start(f"{config.precision} conversion")
    calibration = validation = None
    if sets is not None:
        calibration, validation = sets
    elif config.calib_data is not None or config.validation_data is not None:
        calibration, validation = image_sets(config, info.preprocessing, model_record(fp32_meta, fp32_path, config))
    with scratch_dir(output) as scratch:
        raw = scratch / f"model.{config.precision}.raw.onnx"
        final = scratch / f"model.{config.precision}.onnx"
        step = config.kind.make(
            StepInputs(
                fp32_path, raw, config, calibration, validation, steps.enabled, reference, qat, qat_hint,
                labels=None if validation is None else image_labels(validation, info.class_names),
                output=output,
            )
        )
        proto = load_onnx(raw)
        # the precision tools write a plain ONNX file: stamp our metadata again
        meta = precision_metadata(fp32_path, fp32_meta, config, step, calibration)
        if reference is not None:
            # the model stands for the ORIGINAL checkpoint (it was judged against it), so `check --checkpoint ORIGINAL`
            # accepts it; the fine-tuned checkpoint's checksum is in int8_guard.qat
            original = metadata_of(load_onnx(reference))
            meta.update({k: original[k] for k in ("source_sha256", "source_name") if k in original})
        write_metadata(proto, meta)
        save_onnx(proto, final)
        del proto
        timings["precision"] = steps.stop()

        steps.start(f"{config.precision} graph checks")
        report = run_structural_checks(
            validate_model(final), attention_fp32=config.kind.attention_fp32, qdq=config.kind.requires_qdq, path=final
        )
        timings["precision_checks"] = steps.stop()

        steps.start(f"{checked_runtime(config.precision)} {config.precision} vs fp32")
        comparisons = verify_against_fp32(fp32_path, final, info.preprocessing, config, batches, calibration)
        if not config.kind.logits_gate:
            # one gate (INT8, BF16): the guard's agreement at the user's --min-agreement; the logit tolerance is
            # reported (a NaN or infinite logit still refuses, and a broken graph failed the checks above)
            comparisons = tuple(dataclasses.replace(c, enforced=False) for c in comparisons)
        timings["precision_verification"] = steps.stop()
        check_numeric(comparisons, f"{checked_runtime(config.precision)} {config.precision.upper()} against the FP32 model")
        publish(final, output)
    details = {
        "seconds": float(step.seconds),
        "cache_hit": bool(step.cache_hit),
        **dict(step.details),
    }
    notes: tuple[str, ...] = tuple(step.guard.lines()) if step.guard is not None else ()
    if step.guard is None:
        notes = config.kind.unguarded_note()
    return written_result(
        output,
        info.max_batch,
        report,
        {f"{checked_runtime(config.precision)} {config.precision} vs onnxruntime fp32": comparisons},
        tuple(step.fp32_nodes),
        timings,
        details,
        notes=notes,
        guard=step.guard,
    )

"""The precision step: an FP32 ONNX model made by this tool -> a self-checked FP16, INT8 or BF16 one.

FP16 is Model Optimizer AutoCast with the attention kept FP32 (:mod:`.fp16`);
INT8 is explicit Q/DQ under the accuracy guard (:mod:`.guard`); BF16 is the FP32 graph,
unchanged, marked for BF16 execution by OpenVINO once the BF16 guard passed (:mod:`.bf16`),
and compared as OpenVINO runs it (ONNX Runtime refuses a BF16-marked model). The result
carries the FP32 file's metadata (classes, preprocessing, checkpoint checksum)
plus what the step did, passes the structural checks of its precision, and is
compared with the FP32 model in ONNX Runtime before it is written.
:func:`export_at_precision` is the whole ``dacovid-export onnx`` command:
the FP32 export, then this step.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.artifacts.onnx_metadata import (
    image_record_in,
    info_from_model,
    load_onnx,
    metadata_of,
    read_metadata,
    read_onnx_info,
    write_metadata,
)
from dacovid_export.artifacts.outputs import check_outputs
from dacovid_export.calibration.bf16 import openvino_bf16_runner
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.data import (
    MAX_QAT_IMAGES,
    MAX_VALIDATION_IMAGES,
    check_image_sets,
    image_labels,
    load_calibration_set,
    load_validation_set,
    split_calibration_set,
)
from dacovid_export.calibration.guard import calibrated_agreement
from dacovid_export.calibration.guard_report import AccuracyReport
from dacovid_export.calibration.precisions import StepInputs, guard_report_types, precision_of, registered
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import scratch_dir, sha256_file
from dacovid_export.core.log import get_logger
from dacovid_export.core.onnxruntime_session import open_session, run_session
from dacovid_export.core.progress import StepTimer
from dacovid_export.core.torch_device import torch_device
from dacovid_export.core.versions import package_versions
from dacovid_export.data.agreement import (
    NumericComparison,
    check_numeric,
    compare_numeric,
)
from dacovid_export.data.evidence import resolve_record
from dacovid_export.data.fingerprint import ImageRecord
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.export.checks import run_structural_checks, validate_model
from dacovid_export.export.config import (
    MAX_OPSET,
    MIN_OPSET,
    OnnxExportConfig,
    verify_batches,
)
from dacovid_export.export.files import check_onnx_output, publish, save_onnx
from dacovid_export.export.onnx_export import export_onnx, sample_batch
from dacovid_export.export.result import OnnxExportResult, written_result

__all__ = [
    "convert_precision",
    "export_at_precision",
    "GUARD_KEYS",
    "guard_report_of",
    "guard_fingerprints",
    "qat_checkpoint_path",
]

_log = get_logger("calibration")

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
    output = _check_precision_output(output, checkpoint, precision, record=_checkpoint_record(checkpoint, precision))
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
            step = _qat_convert(checkpoint, fp32.path, output, export, precision, train_data, scratch, progress)
        else:
            step = _convert_checked(
                fp32.path, output, precision, progress, images_checked=True, qat_hint=_qat_command(checkpoint, output, precision)
            )
    return _after_export(fp32, step)


def _checkpoint_record(checkpoint: str | os.PathLike[str], config: PrecisionConfig) -> ImageRecord | None:
    """The training images to keep out of validation: the checkpoint's own record and/or ``--training-data``."""
    from dacovid_export.model.checkpoint import image_record_of, read_checkpoint

    carried = image_record_of(read_checkpoint(checkpoint), checkpoint) if config.calib_data or config.validation_data else None
    return resolve_record(carried, config.training_data)


def _model_record(meta: Mapping[str, str], path: str | os.PathLike[str], config: PrecisionConfig) -> ImageRecord | None:
    """As :func:`_checkpoint_record`, from the record an exported FP32 model carries."""
    return resolve_record(image_record_in(meta, str(path)), config.training_data)


def _after_export(fp32: OnnxExportResult, step: OnnxExportResult) -> OnnxExportResult:
    """The precision step's result with the FP32 export's checks and timings in front (one total for both)."""
    timings = {k: v for r in (fp32, step) for k, v in r.timings.items() if k != "total"}
    return dataclasses.replace(
        step,
        verification={**fp32.verification, **step.verification},
        timings={**timings, "total": sum(timings.values())},
    )


def _qat_command(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], config: PrecisionConfig) -> str | None:
    """The user's own INT8 command with ``--qat`` added: what a refusal of the calibrated model says to run next."""
    if not config.kind.quantization_aware or config.qat:
        return None
    import shlex

    def q(value: object) -> str:
        return shlex.quote(str(value))

    words = ["dacovid-export onnx", q(checkpoint), "-o", q(output), "--precision int8", "--calib-data", q(config.calib_data)]
    options = {"calib_size": "--calib-size", "validation_data": "--validation-data", "min_agreement": "--min-agreement",
               "calib_method": "--calib-method", "cache_dir": "--cache-dir", "seed": "--seed"}
    for name in config.given():
        if name in options:
            words += [options[name], q(getattr(config, name))]
    return "`" + " ".join([*words, "--qat"]) + "`" + (
        "" if (Path(checkpoint).parent / "split.json").is_file()
        else f" --train-data DIR (no split.json beside {Path(checkpoint).name}: the images it was trained on)"
    )


def _convert_hint(info: ArtifactInfo) -> str:
    """From an FP32 ONNX model there are no weights to fine-tune: the checkpoint it was exported from is needed."""
    source = info.extra.get("source_name")
    named = f"{source!r}, recorded in this model's metadata" if source else "the checkpoint this model was exported from"
    return (
        f"it fine-tunes a checkpoint, not an ONNX model: run `dacovid-export onnx CHECKPOINT -o OUT --precision int8 "
        f"--calib-data DATA --qat` with CHECKPOINT the PyTorch checkpoint {named}"
    )


def qat_checkpoint_path(output: str | os.PathLike[str]) -> Path:
    """Where ``--qat`` keeps the fine-tuned checkpoint of ``output`` (``m8.onnx`` -> ``m8.qat.pt``)."""
    output = Path(output)
    return output.with_name(output.stem + ".qat.pt")


def _qat_convert(
    checkpoint: str | os.PathLike[str],
    original_fp32: Path,
    output: Path,
    export: OnnxExportConfig,
    config: PrecisionConfig,
    train_data: Path,
    scratch: Path,
    progress: bool,
) -> OnnxExportResult:
    """Calibrate, fine-tune with fake quantization (distilled to the checkpoint), export, guard against the ORIGINAL FP32."""
    from dacovid_export.calibration.qat import qat_finetune
    from dacovid_export.model.checkpoint import read_checkpoint

    info = read_onnx_info(original_fp32)
    calibration, validation = _image_sets(
        config, info.preprocessing, _model_record(metadata_of(load_onnx(original_fp32)), original_fp32, config)
    )
    train = load_calibration_set(train_data, info.preprocessing, size=MAX_QAT_IMAGES, seed=config.seed)
    held = set(validation.image_sha256)
    keep = [i for i, digest in enumerate(train.image_sha256) if digest not in held] if held else list(range(len(train)))
    if len(keep) < 1:
        raise UserInputError(
            f"every training image in {str(train_data)!r} is a validation image: the fine-tune would see what the guard "
            "judges on; give other --train-data or --validation-data"
        )
    if len(keep) < len(train):
        _log.info(
            f"qat: {len(train) - len(keep)} training image(s) are the guard's validation images and are left out of the "
            f"fine-tune ({len(keep)} used)"
        )
    qat_path = qat_checkpoint_path(output)
    check_outputs(inputs=[checkpoint, config.calib_data, config.validation_data, train_data], files={"--qat checkpoint": qat_path})
    qat_config = config.qat_config()
    source_sha = sha256_file(checkpoint)
    reused = False
    if qat_path.is_file():
        previous = read_checkpoint(qat_path).get("training", {}).get("qat", {})
        reused = previous.get("source_sha256") == source_sha and all(
            previous.get(k) == v for k, v in qat_config.to_dict().items()
        ) and previous.get("train_images") == len(keep)
    if reused:
        _log.info(f"qat: reusing the fine-tuned checkpoint {qat_path} (same checkpoint, options and image count)")
        record: dict[str, Any] = {"method": "qat", "checkpoint": str(qat_path), "reused": True, **previous}
    else:
        result = qat_finetune(
            checkpoint,
            qat_path,
            train_images=train.array[keep],
            calibration_images=calibration.array,
            config=qat_config,
            resume=True,
            progress=progress,
            extra_record={"train_images": len(keep), "train_data": str(train_data)},
        )
        record = result.to_dict() | {"train_data": str(train_data), "reused": False}
    record["source_sha256"] = source_sha
    record["qat_checkpoint_sha256"] = sha256_file(qat_path)
    # what post-training INT8 alone gives on the same images: the report's "before" of the fine-tune
    record["before_qat"] = calibrated_agreement(
        original_fp32, calibration=calibration, validation=validation, method=config.guard_config().methods[0],
        cache_dir=config.cache_dir, labels=image_labels(validation, info.class_names),
    )
    tuned = export_onnx(qat_path, scratch / "model.qat.fp32.onnx", export, progress=progress)
    batches = verify_batches(info.max_batch, info.extra.get("suggested_max_batch"))
    with StepTimer(progress, total=3, bar=True) as steps:
        return _convert(
            tuned.path, output, config, batches, steps, reference=original_fp32, qat=record,
            image_sets=(calibration, validation),
        )


def _check_precision_output(
    output: str | os.PathLike[str], source: str | os.PathLike[str], config: PrecisionConfig, *, images: bool = True,
    record: ImageRecord | None = None,
) -> Path:
    """Before any work: the output, that it destroys no input, and (``images``) the images the step will use."""
    output = check_onnx_output(
        output, inputs=[source, config.calib_data, config.validation_data, config.training_data],
        folders={"--cache-dir": config.cache_dir},
    )
    if config.calib_data is not None and images:
        # too few, shared between calibration and validation, or unreadable: found now, not after minutes of work
        # (the INT8 guard without --validation-data holds out part of --calib-data: that must leave enough on both sides)
        check_image_sets(
            config.calib_data,
            size=config.effective_calib_size,
            seed=config.seed,
            validation_data=config.validation_data,
            split=config.validation_data is None and config.kind.guard is not None,
            record=record,
        )
    return output


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
    return _convert_checked(fp32_onnx, output, config, progress, info, qat_hint=_convert_hint(info))


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
    record = None if images_checked else _model_record(read_metadata(fp32_onnx), fp32_onnx, config)
    output = _check_precision_output(output, fp32_onnx, config, images=not images_checked, record=record)
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
    qat: dict[str, Any] | None = None,
    image_sets: tuple[Any, Any] | None = None,
    qat_hint: str | None = None,
) -> OnnxExportResult:
    fp32_proto = load_onnx(fp32_path)
    info = info_from_model(fp32_proto, fp32_path)
    fp32_meta = metadata_of(fp32_proto)
    del fp32_proto  # up to ~170 MB of weights; the tools below read the file themselves
    timings: dict[str, float] = {}
    steps.start(f"{config.precision} conversion")
    calibration = validation = None
    if image_sets is not None:
        calibration, validation = image_sets
    elif config.calib_data is not None or config.validation_data is not None:
        calibration, validation = _image_sets(config, info.preprocessing, _model_record(fp32_meta, fp32_path, config))
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
        meta = _precision_metadata(fp32_path, fp32_meta, config, step, calibration)
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

        steps.start(f"{_runtime_of(config.precision)} {config.precision} vs fp32")
        comparisons = _verify_against_onnx(fp32_path, final, info.preprocessing, config, batches, calibration)
        if not config.kind.logits_gate:
            # one gate (INT8, BF16): the guard's agreement at the user's --min-agreement; the logit tolerance is
            # reported (a NaN or infinite logit still refuses, and a broken graph failed the checks above)
            comparisons = tuple(dataclasses.replace(c, enforced=False) for c in comparisons)
        timings["precision_verification"] = steps.stop()
        check_numeric(comparisons, f"{_runtime_of(config.precision)} {config.precision.upper()} against the FP32 model")
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
        {f"{_runtime_of(config.precision)} {config.precision} vs onnxruntime fp32": comparisons},
        tuple(step.fp32_nodes),
        timings,
        details,
        notes=notes,
        guard=step.guard,
    )


def _precision_metadata(
    fp32_path: Path, fp32_meta: Mapping[str, str], config: PrecisionConfig, step: Any, calibration: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = dict(fp32_meta)
    producer = json.loads(meta.get("producer", "{}"))
    producer["precision_step"] = f"dacovid_export.calibration ({config.precision}, {config.kind.producer_tool})"
    versions = package_versions()
    meta.update(
        {
            "precision": config.precision,
            "fp32_nodes": list(step.fp32_nodes),
            "parent_sha256": sha256_file(fp32_path),
            "producer": producer,
            "versions": versions,
        }
    )
    if calibration is not None:
        meta["calibration"] = {
            **calibration.describe(),
            "method": step.details.get("method") if config.kind.calibration_method else None,
        }
    if step.guard is not None:
        # the accuracy guard's verdict travels with the model (int8_guard / fp16_guard / bf16_guard); read it back
        # with guard_report_of
        meta[step.guard.METADATA_KEY] = step.guard.to_dict()
    return meta


def _runtime_of(precision: str) -> str:
    """The runtime the self-check runs the written model with: OpenVINO for BF16, ONNX Runtime otherwise."""
    return precision_of(precision).checked_with


def _image_sets(config: PrecisionConfig, preprocessing: Preprocessing, record: ImageRecord | None) -> tuple[Any, Any]:
    """Calibration and validation images of the step; never the same image in both, never a training image in validation.

    ``record``: the checkpoint's training images (None: unknown, and the guard's report says so).
    Without ``calib_data`` (FP16/BF16 with ``validation_data`` only) there are no calibration images.
    """
    if config.validation_data is not None:
        validation = load_validation_set(
            config.validation_data, preprocessing, size=MAX_VALIDATION_IMAGES, seed=config.seed, record=record
        )
        if config.calib_data is None:
            return None, validation
        calibration = load_calibration_set(
            config.calib_data, preprocessing, size=config.effective_calib_size, seed=config.seed
        )
        return calibration, validation
    if config.calib_data is None:
        raise UserInputError(f"precision {config.precision!r} needs images: pass --calib-data DIR or --validation-data DIR")
    return split_calibration_set(
        config.calib_data, preprocessing, size=config.effective_calib_size, seed=config.seed, record=record
    )


# the metadata (and report.json) key each guard's report is written under (calibration.precisions: guard_report)
GUARD_KEYS = tuple(kind.METADATA_KEY for kind in guard_report_types())


def guard_report_of(metadata: Mapping[str, Any]) -> AccuracyReport | None:
    """The accuracy guard's report in a precision model's metadata (raw strings or parsed values), typed.

    The same object the step wrote, so the pipeline report and the step render it with the same ``lines()``.
    """
    for kind in guard_report_types():
        data = metadata.get(kind.METADATA_KEY)
        if isinstance(data, str):
            data = json.loads(data)
        if data:
            return kind.from_dict(data)
    return None


def guard_fingerprints(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The content fingerprints of the images the ONNX model's accuracy guard chose it on (none: unguarded)."""
    from dacovid_export.calibration.guard_report import validation_fingerprints

    return validation_fingerprints(guard_report_of(read_metadata(path)))


def _verify_against_onnx(
    fp32_path: Path, candidate: Path, preprocessing: Preprocessing, config: PrecisionConfig, batches: tuple[int, ...], calibration: Any
) -> tuple[NumericComparison, ...]:
    atol, rtol = config.tolerance
    reference_session = open_session(fp32_path, purpose="check the exported model", error=CheckFailedError)
    if config.kind.checked_with == "openvino":
        # the written file is the FP32 graph (BF16): what it claims is how OpenVINO runs it, so that is compared
        run_bf16 = openvino_bf16_runner(candidate)
        return _compare_batches(reference_session, run_bf16, preprocessing, config, batches, calibration, atol, rtol)
    candidate_session = open_session(candidate, purpose="check the exported model", error=CheckFailedError)
    return _compare_batches(
        reference_session, lambda images: run_session(candidate_session, images), preprocessing, config, batches,
        calibration, atol, rtol,
    )


def _compare_batches(
    reference_session: Any,
    run_candidate: Callable[[np.ndarray], np.ndarray],
    preprocessing: Preprocessing,
    config: PrecisionConfig,
    batches: tuple[int, ...],
    calibration: Any,
    atol: float,
    rtol: float,
) -> tuple[NumericComparison, ...]:
    out = []
    start = 0
    for i, n in enumerate(batches):
        if calibration is not None and len(calibration.array) >= start + n:
            # real images where we have them (each batch its own), judged on the data the step was calibrated for
            images = np.ascontiguousarray(calibration.array[start : start + n], dtype=np.float32)
            start += n
        else:
            images = sample_batch(preprocessing, n, seed=config.seed + i)
        reference = run_session(reference_session, images)
        out.append(compare_numeric(reference, run_candidate(images), atol=atol, rtol=rtol))
    return tuple(out)

"""Checkpoint -> self-checked FP32 ONNX model.

The export uses torch.onnx's dynamo exporter with a dynamic batch dimension
(or a fixed one), embeds all weights in one ``.onnx`` file, stamps the metadata
of :mod:`dacovid_export.artifacts.onnx_metadata`, and refuses to write the file
unless it passes the checks of :mod:`dacovid_export.export.checks` and matches
PyTorch in ONNX Runtime. FP16 and INT8 models are made from such a file by the
precision step (:mod:`dacovid_export.calibration.convert`), so the TensorRT
step can also start from one.

The file is built in a scratch folder beside the target and renamed into place
only after all checks passed: a failed check leaves no output behind.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.artifacts.onnx_metadata import (
    IMAGE_RECORD_KEY,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    write_metadata,
)
from dacovid_export.core.deps import require
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import scratch_dir
from dacovid_export.core.onnxruntime_session import open_session, run_session
from dacovid_export.core.progress import StepTimer
from dacovid_export.core.versions import __version__, package_versions
from dacovid_export.data.agreement import (
    NumericComparison,
    check_numeric,
    compare_numeric,
)
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.export.checks import run_structural_checks, validate_model
from dacovid_export.export.config import OnnxExportConfig
from dacovid_export.export.files import check_onnx_output, publish, save_onnx
from dacovid_export.export.result import OnnxExportResult, written_result

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = ["export_onnx", "sample_batch"]


def export_onnx(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: OnnxExportConfig = OnnxExportConfig(),
    *,
    progress: bool = False,
) -> OnnxExportResult:
    """Export a checkpoint to a self-checked FP32 ONNX model at ``output``.

    FP16/INT8 models are made from it by the precision step
    (:func:`dacovid_export.calibration.convert.convert_precision`).
    Raises :class:`UserInputError` for a bad checkpoint or option and
    :class:`CheckFailedError` when the model fails a self-check (no file is written then).
    """
    from dacovid_export.model.checkpoint import load_checkpoint

    if Path(checkpoint).suffix.lower() == ".onnx":
        raise UserInputError(
            f"{str(checkpoint)!r} is an ONNX model; this step exports a checkpoint (.pt). To turn an FP32 ONNX "
            "model into FP16/INT8 use dacovid_export.calibration.convert.convert_precision"
        )
    output = check_onnx_output(output, inputs=[checkpoint])
    # before any progress output, so a bad checkpoint gives exactly one line of error
    started = time.perf_counter()
    model, meta = load_checkpoint(checkpoint)
    timings: dict[str, float] = {"load": time.perf_counter() - started}
    with StepTimer(progress, total=3, bar=True, stage="export") as steps, scratch_dir(output) as scratch:
        fp32_path = scratch / "model.fp32.onnx"
        steps.start("torch.onnx export (dynamo)")
        proto = _torch_export(model, meta.preprocessing.image_size, config)
        write_metadata(proto, _export_metadata(meta, config))
        save_onnx(proto, fp32_path)
        del proto
        timings["export"] = steps.stop()

        steps.start("graph checks")
        report = run_structural_checks(validate_model(fp32_path), path=fp32_path)
        timings["checks"] = steps.stop()

        steps.start("onnxruntime vs pytorch")
        comparisons = _verify_against_torch(model, fp32_path, meta.preprocessing, config)
        timings["verification"] = steps.stop()
        check_numeric(comparisons, "ONNX Runtime (FP32) against PyTorch")
        del model
        publish(fp32_path, output)
    return written_result(output, config.fixed_batch, report, {"onnxruntime fp32 vs pytorch": comparisons}, (), timings, {})


def sample_batch(preprocessing: Preprocessing, n: int, seed: int) -> np.ndarray:
    """Seeded float32 ``n x 3 x S x S`` inputs in the range real preprocessed images have.

    Uniform gray levels in [0, 1], normalised like a real X-ray, so every
    channel spans the same values a deployed model sees.
    """
    rng = np.random.default_rng(seed)
    s = preprocessing.image_size
    gray = rng.random((n, 1, s, s), dtype=np.float32)
    mean = np.asarray(preprocessing.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(preprocessing.std, dtype=np.float32)[None, :, None, None]
    return np.ascontiguousarray((gray - mean) / std, dtype=np.float32)


def _torch_export(model: "torch.nn.Module", image_size: int, config: OnnxExportConfig) -> "onnx.ModelProto":
    """The dynamo exporter's graph, weights embedded in the proto."""
    import torch

    require("onnxscript", "run torch.onnx's dynamo exporter")
    fixed = config.fixed_batch
    # batch 2 while tracing: torch.export specialises dimensions whose example size is 1
    example = torch.zeros(fixed or 2, 3, image_size, image_size)
    dynamic_shapes = None if fixed is not None else {"x": {0: torch.export.Dim("batch", min=1)}}
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter warns about its own internals (deprecations, onnxscript versions)
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,
            verbose=False,
            input_names=["input"],
            output_names=["logits"],
            opset_version=config.opset,
            dynamic_shapes=dynamic_shapes,
            optimize=True,
        )
    if program is None:  # only the legacy exporter returns None
        raise CheckFailedError("torch.onnx.export returned no program; the dynamo exporter is required")
    proto = program.model_proto
    proto.doc_string = "DA-COVID Net chest X-ray classifier, exported by dacovid-export"
    return proto


def _export_metadata(meta: Any, config: OnnxExportConfig) -> dict[str, Any]:

    versions = package_versions()
    pre: Preprocessing = meta.preprocessing
    values: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "format_version": str(ONNX_FORMAT_VERSION),
        "class_names": list(meta.class_names),
        "image_size": str(pre.image_size),
        "mean": list(pre.mean),
        "std": list(pre.std),
        "preprocessing": pre.to_dict(),
        "precision": "fp32",
        "source_sha256": meta.sha256,
        "source_name": Path(meta.path).name,
        "model_config": meta.model_config.to_dict(),
        "versions": versions,
        "torch_version": versions.get("torch", ""),
        "onnx_version": versions.get("onnx", ""),
        "dacovid_export_version": __version__,
        "producer": {
            "name": "dacovid-export",
            "version": __version__,
            "exporter": "torch.onnx.export(dynamo=True)",
            "opset": config.opset,
        },
        "opset": str(config.opset),
        "input_layout": "NCHW float32, preprocessed (see preprocessing)",
    }
    if meta.image_record is not None:
        # the precision step and check tell training images from unseen ones by it (FP16/INT8 models keep it)
        values[IMAGE_RECORD_KEY] = meta.image_record.to_dict()
    if config.fixed_batch is not None:
        values["max_batch"] = str(config.fixed_batch)
    elif config.max_batch is not None:
        values["suggested_max_batch"] = str(config.max_batch)
    return values


def _verify_against_torch(
    model: "torch.nn.Module", path: Path, preprocessing: Preprocessing, config: OnnxExportConfig
) -> tuple[NumericComparison, ...]:
    import torch

    atol, rtol = config.tolerance
    session = open_session(path, purpose="check the exported model", error=CheckFailedError)
    out = []
    for i, n in enumerate(config.verify_batches()):
        batch = sample_batch(preprocessing, n, seed=config.seed + i)
        with torch.no_grad():
            reference = model(torch.from_numpy(batch)).numpy()
        out.append(compare_numeric(reference, run_session(session, batch), atol=atol, rtol=rtol))
    return tuple(out)

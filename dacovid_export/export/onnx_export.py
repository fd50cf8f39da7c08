"""Checkpoint -> self-checked ONNX model (FP32, or FP16 / INT8 through the precision step).

The FP32 export uses torch.onnx's dynamo exporter with a dynamic batch
dimension (or a fixed one), embeds all weights in one ``.onnx`` file, stamps the
metadata of :mod:`dacovid_export.artifacts.onnx_metadata`, and refuses to write the file
unless it passes the checks of :mod:`dacovid_export.export.checks` and matches
PyTorch in ONNX Runtime. FP16 and INT8 models start from such an FP32 file
(:func:`convert_precision`), so the TensorRT step can also start from one.

Every file is built in a temporary folder beside the target and renamed into
place only after all checks passed: a failed check leaves no output behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dacovid_export.calibration.data import MIN_CALIBRATION_IMAGES as MIN_CALIB_SIZE
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import atomic_path, check_outputs, scratch_dir, sha256_file
from dacovid_export.artifacts.info import PRECISIONS, Precision
from dacovid_export.artifacts.onnx_graph import AttentionChain
from dacovid_export.export.checks import (
    NumericComparison,
    check_numeric,
    compare_logits,
    onnxruntime_session,
    run_onnxruntime,
    run_structural_checks,
    validate_model,
)
from dacovid_export.artifacts.onnx_metadata import (
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    info_from_model,
    load_onnx,
    metadata_of,
    read_onnx_info,
    write_metadata,
)
from dacovid_export.data.preprocessing import Preprocessing

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MAX_OPSET",
    "DEFAULT_CALIB_SIZE",
    "MIN_CALIB_SIZE",
    "DEFAULT_TOLERANCES",
    "OnnxExportConfig",
    "OnnxExportResult",
    "export_onnx",
    "convert_precision",
    "sample_batch",
    "guard_summary_lines",
]


# Opset 20: read by the TensorRT 10.x/11.x parsers (9..24) and ONNX Runtime 1.24,
# and above the minimum of Model Optimizer 0.47's INT8 path (19), so the precision
# step never has to up-convert the graph (modelopt/onnx/quantization/quantize.py).
DEFAULT_OPSET = 20
MIN_OPSET = 19
MAX_OPSET = 24
DEFAULT_CALIB_SIZE = 256
_MAX_BATCH_LIMIT = 4096
_VERIFY_BATCHES = (1, 3)
_TWO_GB = 2**31

# (atol, rtol) of the numeric self-check: allowed max |diff| = atol + rtol * max|reference logit|.
# FP32: ORT vs PyTorch differ by reordered float sums only (8e-5 on logits of ~30 measured).
# FP16/INT8: against the FP32 ONNX model; loose enough for honest rounding, tight enough
# to catch an attention overflow (which changed logits by ~70% of their scale, docs/design.md section 4).
DEFAULT_TOLERANCES: Mapping[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-3),
    "fp16": (1e-3, 5e-2),
    "int8": (1e-2, 2.5e-1),
}


@dataclasses.dataclass(frozen=True)
class OnnxExportConfig:
    """Options of :func:`export_onnx`, validated on construction.

    ``max_batch``: with ``static_batch`` the fixed batch size (1 when unset);
    with a dynamic batch a hint stored as ``suggested_max_batch`` for engine
    profiles, and the cap of the self-check's batch sizes.
    ``calib_size``/``calib_method``: ``None`` means the default (256, ``entropy``);
    they may only be given with a precision that uses them.
    ``atol``/``rtol``: ``None`` means :data:`DEFAULT_TOLERANCES` of the precision.
    """

    precision: Precision = "fp32"
    opset: int = DEFAULT_OPSET
    max_batch: int | None = None
    static_batch: bool = False
    calib_data: Path | None = None
    calib_size: int | None = None
    calib_method: Literal["entropy", "max"] | None = None
    seed: int = 0
    cache_dir: Path | None = None
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    validation_data: Path | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserInputError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise UserInputError(
                f"opset={self.opset!r}: choose {MIN_OPSET}..{MAX_OPSET} (TensorRT's parser reads up to {MAX_OPSET}; "
                f"Model Optimizer's INT8 step needs >= {MIN_OPSET}); the default is {DEFAULT_OPSET}"
            )
        if self.max_batch is not None and (
            isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or not 1 <= self.max_batch <= _MAX_BATCH_LIMIT
        ):
            raise UserInputError(f"max_batch={self.max_batch!r}: need an integer in 1..{_MAX_BATCH_LIMIT}")
        if not isinstance(self.static_batch, bool):
            raise UserInputError(f"static_batch={self.static_batch!r}: need True or False")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserInputError(f"seed={self.seed!r}: need an integer >= 0")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
                raise UserInputError(f"{name}={value!r}: need a finite number >= 0")
        for name in ("calib_data", "cache_dir", "validation_data"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        self._validate_calibration()
        self._validate_guard()

    def _validate_guard(self) -> None:
        given = [n for n in ("min_agreement", "validation_data") if getattr(self, n) is not None]
        if given and self.precision != "int8":
            raise UserInputError(
                f"{', '.join(given)} given with precision {self.precision!r}: the accuracy guard is an INT8 option"
            )
        if self.precision == "int8":
            self.guard_config()  # GuardConfig is the one home of the guard's option rules (min_agreement in 0..1)
        data = self.validation_data
        if data is not None and not (data.is_dir() or (data.is_file() and data.suffix.lower() == ".json")):
            raise UserInputError(
                f"validation data {str(data)!r} is neither a directory nor a dacovid-train split.json (its held-out part)"
            )

    def _validate_calibration(self) -> None:
        if self.calib_size is not None and (
            isinstance(self.calib_size, bool) or not isinstance(self.calib_size, int) or self.calib_size < MIN_CALIB_SIZE
        ):
            raise UserInputError(f"calib_size={self.calib_size!r}: need an integer >= {MIN_CALIB_SIZE}")
        if self.calib_method is not None and self.calib_method not in ("entropy", "max"):
            raise UserInputError(f"calib_method={self.calib_method!r}: choose 'entropy' or 'max'")
        if self.precision == "fp32":
            given = [n for n in ("calib_data", "calib_size", "calib_method") if getattr(self, n) is not None]
            if given:
                raise UserInputError(
                    f"{', '.join(given)} given with precision 'fp32': calibration is used by fp16/int8 only; "
                    "drop the option or pick --precision fp16/int8"
                )
        if self.precision == "fp16" and self.calib_method is not None:
            raise UserInputError(
                "calib_method is an INT8 option; FP16 uses calibration images only for its range check (--calib-data)"
            )
        if self.precision == "int8" and self.calib_data is None:
            raise UserInputError(
                "precision 'int8' needs calibration images: pass --calib-data DIR (class folders or a flat folder of "
                "images like those the model will see)"
            )
        if self.calib_data is not None and not (
            self.calib_data.is_dir() or (self.calib_data.is_file() and self.calib_data.suffix.lower() == ".json")
        ):
            raise UserInputError(
                f"calibration data {str(self.calib_data)!r} is neither a directory nor a dacovid-train split.json"
            )
        if self.cache_dir is not None and self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise UserInputError(f"cache_dir {str(self.cache_dir)!r} exists and is not a directory")

    @property
    def effective_calib_size(self) -> int:
        return self.calib_size if self.calib_size is not None else DEFAULT_CALIB_SIZE

    @property
    def effective_calib_method(self) -> str:
        return self.calib_method or "entropy"

    def guard_config(self) -> Any:
        """The INT8 accuracy guard's options: every calibration method unless one was chosen."""
        from dacovid_export.calibration.guard import DEFAULT_MIN_AGREEMENT, GuardConfig
        from dacovid_export.calibration.int8 import CALIBRATION_METHODS

        return GuardConfig(
            min_agreement=DEFAULT_MIN_AGREEMENT if self.min_agreement is None else self.min_agreement,
            methods=(self.calib_method,) if self.calib_method is not None else CALIBRATION_METHODS,
        )

    @property
    def tolerance(self) -> tuple[float, float]:
        """(atol, rtol) of the numeric self-check of this precision."""
        atol, rtol = DEFAULT_TOLERANCES[self.precision]
        return (atol if self.atol is None else float(self.atol), rtol if self.rtol is None else float(self.rtol))

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the graph, or ``None`` for a dynamic batch."""
        return (self.max_batch or 1) if self.static_batch else None

    def verify_batches(self) -> tuple[int, ...]:
        if self.fixed_batch is not None:
            return (self.fixed_batch,)
        cap = self.max_batch or max(_VERIFY_BATCHES)
        return tuple(sorted({min(b, cap) for b in _VERIFY_BATCHES}))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("calib_data", "cache_dir", "validation_data"):
            out[name] = None if out[name] is None else str(out[name])
        return out


@dataclasses.dataclass(frozen=True)
class OnnxExportResult:
    """What an export or precision conversion wrote and how it checked it."""

    path: Path
    precision: str
    opset: int
    batch: int | None  # fixed batch size; None = dynamic
    size_bytes: int
    sha256: str
    source_sha256: str  # the checkpoint's
    histogram: Mapping[str, int]
    checks: tuple[str, ...]
    attention: tuple[AttentionChain, ...]
    # label ("onnxruntime fp32 vs pytorch", ...) -> one comparison per batch size
    verification: Mapping[str, tuple[NumericComparison, ...]]
    fp32_nodes: tuple[str, ...]  # nodes the precision step left in FP32 (empty for FP32 exports)
    timings: Mapping[str, float]  # step -> wall seconds
    precision_details: Mapping[str, Any]
    metadata: Mapping[str, str]

    def summary_lines(self) -> list[str]:
        """Human-readable report: what was written, checks, numerics, FP32 nodes, timings."""
        batch = "dynamic batch" if self.batch is None else f"static batch {self.batch}"
        lines = [
            f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB, {self.precision}, opset {self.opset}, {batch})",
            f"sha256 {self.sha256}",
            "operators: " + ", ".join(f"{op} {n}" for op, n in self.histogram.items()),
        ]
        lines += [f"check passed: {c}" for c in self.checks]
        for label, comparisons in self.verification.items():
            lines += [f"{label}: {c.describe()}" for c in comparisons]
        guard = self.precision_details.get("guard")
        if guard:
            lines += guard_summary_lines(guard)
        if self.precision != "fp32":
            shown = ", ".join(self.fp32_nodes[:20]) + (f", ... ({len(self.fp32_nodes)} in all)" if len(self.fp32_nodes) > 20 else "")
            lines.append(f"nodes kept in FP32 ({len(self.fp32_nodes)}): {shown or 'none'}")
        lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "precision": self.precision,
            "opset": self.opset,
            "batch": self.batch,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "histogram": dict(self.histogram),
            "checks": list(self.checks),
            "attention": [dataclasses.asdict(b) for b in self.attention],
            "verification": {k: [c.to_dict() for c in v] for k, v in self.verification.items()},
            "fp32_nodes": list(self.fp32_nodes),
            "timings": dict(self.timings),
            "precision_details": _jsonable(self.precision_details),
            "metadata": dict(self.metadata),
        }


# ---------------------------------------------------------------------------
# public entry points


def export_onnx(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: OnnxExportConfig = OnnxExportConfig(),
    *,
    progress: bool = False,
) -> OnnxExportResult:
    """Export a checkpoint to a self-checked ONNX model at ``output``.

    FP16/INT8: the FP32 model is exported and checked in a temporary folder,
    then :func:`convert_precision` turns it into ``output``.
    Raises :class:`UserInputError` for a bad checkpoint or option and
    :class:`CheckFailedError` when the model fails a self-check (no file is written then).
    """
    from dacovid_export.model.checkpoint import load_checkpoint

    if Path(checkpoint).suffix.lower() == ".onnx":
        raise UserInputError(
            f"{str(checkpoint)!r} is an ONNX model; this step exports a checkpoint (.pt). To turn an FP32 ONNX "
            "model into FP16/INT8 use dacovid_export.export.onnx_export.convert_precision"
        )
    output = _check_output(output, source=checkpoint, config=config)
    # before any progress output, so a bad checkpoint gives exactly one line of error
    started = time.perf_counter()
    model, meta = load_checkpoint(checkpoint)
    timings: dict[str, float] = {"load": time.perf_counter() - started}
    with _Steps(progress, total=3 if config.precision == "fp32" else 6) as steps:
        with scratch_dir(output) as scratch:
            fp32_path = scratch / "model.fp32.onnx"
            steps.start("torch.onnx export (dynamo)")
            proto = _torch_export(model, meta.preprocessing.image_size, config)
            write_metadata(proto, _export_metadata(meta, config))
            _save(proto, fp32_path)
            del proto
            timings["export"] = steps.elapsed()

            steps.start("graph checks")
            report = run_structural_checks(validate_model(fp32_path), precision="fp32", path=fp32_path)
            timings["checks"] = steps.elapsed()

            steps.start("onnxruntime vs pytorch")
            comparisons = _verify_against_torch(model, fp32_path, meta.preprocessing, config)
            timings["verification"] = steps.elapsed()
            check_numeric(comparisons, "ONNX Runtime (FP32) against PyTorch")
            verification = {"onnxruntime fp32 vs pytorch": comparisons}
            del model

            if config.precision == "fp32":
                _publish(fp32_path, output)
                return _result(output, config.fixed_batch, report, verification, (), timings, {})
            inner = _convert(fp32_path, output, config, steps)
        merged = {**timings, **{k: v for k, v in inner.timings.items() if k != "total"}}
        return dataclasses.replace(
            inner,
            verification={**verification, **inner.verification},
            timings={**merged, "total": sum(merged.values())},
        )


def convert_precision(
    fp32_onnx: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    precision: Precision,
    calib_data: str | os.PathLike[str] | None = None,
    calib_size: int | None = None,
    calib_method: Literal["entropy", "max"] | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_agreement: float | None = None,
    validation_data: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> OnnxExportResult:
    """Turn an FP32 ONNX model written by this tool into an FP16 or INT8 one at ``output``.

    INT8 is accuracy-guarded (:mod:`dacovid_export.calibration.guard`): it must agree with
    the FP32 model on ``min_agreement`` (default 0.99) of validation images calibration never
    saw (``validation_data``, or by default a seeded, stratified part of ``calib_data``),
    taking the costliest nodes out of INT8 if needed, or nothing is written.

    The metadata (classes, preprocessing, checkpoint checksum) comes from the
    FP32 file. The result gets the structural checks that apply to its precision
    and is compared with the FP32 model in ONNX Runtime, on the calibration
    images when given, on seeded synthetic inputs otherwise.
    """
    if precision not in ("fp16", "int8"):
        raise UserInputError(f"precision={precision!r}: convert_precision makes 'fp16' or 'int8' models")
    info = read_onnx_info(fp32_onnx)
    if info.precision != "fp32":
        raise UserInputError(
            f"{str(fp32_onnx)!r} is a {info.precision} model; the precision step starts from the FP32 export"
        )
    opset = info.extra.get("opset")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserInputError(
            f"{str(fp32_onnx)!r} uses opset {opset}; the precision step needs {MIN_OPSET}..{MAX_OPSET}: re-export it"
        )
    config = OnnxExportConfig(
        precision=precision,
        opset=opset,
        max_batch=info.max_batch if info.max_batch is not None else info.extra.get("suggested_max_batch"),
        static_batch=info.max_batch is not None,
        calib_data=None if calib_data is None else Path(calib_data),
        calib_size=calib_size,
        calib_method=calib_method,
        seed=seed,
        cache_dir=None if cache_dir is None else Path(cache_dir),
        atol=atol,
        rtol=rtol,
        min_agreement=min_agreement,
        validation_data=None if validation_data is None else Path(validation_data),
    )
    output = _check_output(output, source=fp32_onnx, config=config)
    with _Steps(progress, total=3) as steps:
        return _convert(Path(fp32_onnx), output, config, steps)


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


# ---------------------------------------------------------------------------
# the precision step


def _convert(fp32_path: Path, output: Path, config: OnnxExportConfig, steps: "_Steps") -> OnnxExportResult:
    fp32_proto = load_onnx(fp32_path)
    info = info_from_model(fp32_proto, fp32_path)
    fp32_meta = metadata_of(fp32_proto)
    del fp32_proto  # up to ~170 MB of weights; the tools below read the file themselves
    timings: dict[str, float] = {}
    steps.start(f"{config.precision} conversion")
    calibration = validation = None
    if config.precision == "int8" and config.calib_data is not None:
        calibration, validation = _int8_image_sets(config, info.preprocessing)
    elif config.calib_data is not None:
        from dacovid_export.calibration.data import load_calibration_set

        calibration = load_calibration_set(
            config.calib_data, info.preprocessing, size=config.effective_calib_size, seed=config.seed
        )
    with scratch_dir(output) as scratch:
        raw = scratch / f"model.{config.precision}.raw.onnx"
        final = scratch / f"model.{config.precision}.onnx"
        if config.precision == "fp16":
            from dacovid_export.calibration.fp16 import convert_fp16

            step = convert_fp16(fp32_path, raw, calibration=None if calibration is None else calibration.array)
        else:
            from dacovid_export.calibration.guard import guarded_quantize_int8

            step = guarded_quantize_int8(
                fp32_path,
                raw,
                calibration=calibration,
                validation=validation,
                config=config.guard_config(),
                cache_dir=config.cache_dir,
                progress=steps.enabled,
            )
        proto = load_onnx(raw)
        # the precision tools write a plain ONNX file: stamp our metadata again
        write_metadata(proto, _precision_metadata(fp32_path, fp32_meta, config, step, calibration))
        _save(proto, final)
        del proto
        timings["precision"] = steps.elapsed()

        steps.start(f"{config.precision} graph checks")
        report = run_structural_checks(validate_model(final), precision=config.precision, path=final)
        timings["precision_checks"] = steps.elapsed()

        steps.start(f"onnxruntime {config.precision} vs fp32")
        comparisons = _verify_against_onnx(fp32_path, final, info.preprocessing, config, calibration)
        timings["precision_verification"] = steps.elapsed()
        check_numeric(comparisons, f"ONNX Runtime {config.precision.upper()} against the FP32 model")
        _publish(final, output)
    details = {
        "seconds": float(step.seconds),
        "cache_hit": bool(step.cache_hit),
        **dict(step.details),
    }
    return _result(
        output,
        info.max_batch,
        report,
        {f"onnxruntime {config.precision} vs onnxruntime fp32": comparisons},
        tuple(step.fp32_nodes),
        timings,
        details,
    )


# ---------------------------------------------------------------------------
# export internals


def _torch_export(model: "torch.nn.Module", image_size: int, config: OnnxExportConfig) -> "onnx.ModelProto":
    """The dynamo exporter's graph, weights embedded in the proto."""
    import torch

    from dacovid_export.core.deps import require

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
    from dacovid_export import __version__
    from dacovid_export.core.versions import package_versions

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
    if config.fixed_batch is not None:
        values["max_batch"] = str(config.fixed_batch)
    elif config.max_batch is not None:
        values["suggested_max_batch"] = str(config.max_batch)
    return values


def _precision_metadata(
    fp32_path: Path, fp32_meta: Mapping[str, str], config: OnnxExportConfig, step: Any, calibration: Any
) -> dict[str, Any]:
    from dacovid_export.core.versions import package_versions

    meta: dict[str, Any] = dict(fp32_meta)
    producer = json.loads(meta.get("producer", "{}"))
    producer["precision_step"] = f"dacovid_export.calibration ({config.precision}, nvidia-modelopt)"
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
            "method": step.details.get("method") if config.precision == "int8" else None,
        }
    if "guard" in step.details:
        # the accuracy guard's verdict travels with the model: method, nodes out of INT8, agreement before/after
        meta["int8_guard"] = step.details["guard"]
    return meta


def _int8_image_sets(config: OnnxExportConfig, preprocessing: Preprocessing) -> tuple[Any, Any]:
    """Calibration and validation images for the guarded INT8 step; never the same image in both."""
    from dacovid_export.calibration.data import (
        MAX_VALIDATION_IMAGES,
        load_calibration_set,
        load_validation_set,
        split_calibration_set,
    )

    if config.calib_data is None:
        raise UserInputError("precision 'int8' needs calibration images: pass --calib-data DIR")
    if config.validation_data is None:
        return split_calibration_set(
            config.calib_data, preprocessing, size=config.effective_calib_size, seed=config.seed
        )
    calibration = load_calibration_set(config.calib_data, preprocessing, size=config.effective_calib_size, seed=config.seed)
    validation = load_validation_set(config.validation_data, preprocessing, size=MAX_VALIDATION_IMAGES, seed=config.seed)
    return calibration, validation


def guard_summary_lines(guard: Mapping[str, Any]) -> list[str]:
    """Report lines of an INT8 accuracy guard record (``int8_guard`` metadata / ``precision_details["guard"]``)."""
    before, after = guard["before"], guard["after"]
    excluded = guard.get("excluded_nodes", [])
    shown = ", ".join(f"{n['label']} ({n['dtype']})" for n in excluded[:10]) + (
        f", ... ({len(excluded)} in all)" if len(excluded) > 10 else ""
    )
    return [
        f"INT8 guard: {guard['method']} calibration; agreement with FP32 on {after['images']} validation images "
        f"{before['agreement']:.2%} -> {after['agreement']:.2%} (target {guard['target_agreement']:.2%}); "
        f"|Δlogit| median {before['median_abs_dlogit']:.3g} -> {after['median_abs_dlogit']:.3g}, "
        f"max {before['max_abs_dlogit']:.3g} -> {after['max_abs_dlogit']:.3g}",
        f"INT8 guard: validation images: {guard['validation'].get('source')}",
        f"INT8 guard: convolutions left INT8 {guard['int8_convs']}/{guard['convs']} ({guard['int8_conv_share']:.1%}); "
        f"out of INT8: {shown or 'none'}; {guard['seconds']:.1f}s",
        *(
            [f"INT8 guard: under OpenVINO (CPU, FP32 set around INT8): agreement {ov['agreement']:.2%}, "
             f"|Δlogit| median {ov['median_abs_dlogit']:.3g} max {ov['max_abs_dlogit']:.3g}"]
            if (ov := guard.get("after_openvino"))
            else []
        ),
    ]


def _verify_against_torch(
    model: "torch.nn.Module", path: Path, preprocessing: Preprocessing, config: OnnxExportConfig
) -> tuple[NumericComparison, ...]:
    import torch

    atol, rtol = DEFAULT_TOLERANCES["fp32"] if config.precision != "fp32" else config.tolerance
    session = onnxruntime_session(path)
    out = []
    for i, n in enumerate(config.verify_batches()):
        batch = sample_batch(preprocessing, n, seed=config.seed + i)
        with torch.no_grad():
            reference = model(torch.from_numpy(batch)).numpy()
        out.append(compare_logits(reference, run_onnxruntime(session, batch), atol=atol, rtol=rtol))
    return tuple(out)


def _verify_against_onnx(
    fp32_path: Path, candidate: Path, preprocessing: Preprocessing, config: OnnxExportConfig, calibration: Any
) -> tuple[NumericComparison, ...]:
    atol, rtol = config.tolerance
    reference_session = onnxruntime_session(fp32_path)
    candidate_session = onnxruntime_session(candidate)
    out = []
    start = 0
    for i, n in enumerate(config.verify_batches()):
        if calibration is not None and len(calibration.array) >= start + n:
            # real images where we have them (each batch its own), judged on the data the step was calibrated for
            batch = np.ascontiguousarray(calibration.array[start : start + n], dtype=np.float32)
            start += n
        else:
            batch = sample_batch(preprocessing, n, seed=config.seed + i)
        reference = run_onnxruntime(reference_session, batch)
        out.append(compare_logits(reference, run_onnxruntime(candidate_session, batch), atol=atol, rtol=rtol))
    return tuple(out)


def _result(
    path: Path,
    batch: int | None,
    report: Any,
    verification: Mapping[str, tuple[NumericComparison, ...]],
    fp32_nodes: tuple[str, ...],
    timings: Mapping[str, float],
    details: Mapping[str, Any],
) -> OnnxExportResult:
    proto = load_onnx(path)
    info = info_from_model(proto, path)
    return OnnxExportResult(
        path=path,
        precision=info.precision,
        opset=int(info.extra.get("opset") or 0),
        batch=batch,
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        source_sha256=info.source_sha256,
        histogram=dict(report.histogram),
        checks=tuple(report.checks),
        attention=tuple(report.attention),
        verification=dict(verification),
        fp32_nodes=tuple(fp32_nodes),
        timings={**timings, "total": sum(timings.values())},
        precision_details=dict(details),
        metadata=metadata_of(proto),
    )


# ---------------------------------------------------------------------------
# files


def _check_output(
    output: str | os.PathLike[str], *, source: str | os.PathLike[str], config: OnnxExportConfig | None = None
) -> Path:
    """Before any work: the output's name, that it destroys no input and can be written, and the calibration set."""
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise UserInputError(f"output {str(output)!r} must end in .onnx (tools pick the artifact type by suffix)")
    if output.is_dir():
        raise UserInputError(f"output {str(output)!r} is a directory; give a file name ending in .onnx")
    calib = None if config is None else config.calib_data
    check_outputs(
        inputs=[source, calib],
        files={"output": output},
        folders={"--cache-dir": None if config is None else config.cache_dir},
    )
    if calib is not None:
        from dacovid_export.calibration.data import find_calibration_images

        # an empty or too small calibration set is found now, not after minutes of FP32 export
        # the INT8 guard without --validation-data holds out part of it: that must leave enough on both sides
        find_calibration_images(calib, split=config.precision == "int8" and config.validation_data is None)
    return output


def _save(proto: "onnx.ModelProto", path: Path) -> None:
    """One self-contained file: every tensor embedded (the dynamo exporter defaults to external data)."""
    import onnx

    size = proto.ByteSize()
    if size >= _TWO_GB:
        raise CheckFailedError(
            f"the model is {size / 2**30:.2f} GiB; protobuf cannot embed more than 2 GiB in one .onnx file. "
            "Use a smaller model configuration"
        )
    onnx.save(proto, str(path), save_as_external_data=False)


def _publish(built: Path, output: Path) -> None:
    with atomic_path(output) as tmp:
        shutil.move(str(built), str(tmp))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class _Steps:
    """Step-wise progress on stderr (tqdm) and wall time per step."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._bar: Any = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> "_Steps":
        if self.enabled:
            from tqdm import tqdm

            # disable=None: silent when stderr is not a terminal (logs, CI)
            self._bar = tqdm(
                total=self.total,
                file=sys.stderr,
                bar_format="{desc} [{n_fmt}/{total_fmt}] {elapsed}",
                leave=False,
                disable=None,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def start(self, name: str) -> None:
        self._t0 = time.perf_counter()
        if self._bar is not None:
            self._bar.set_description_str(name)
            self._bar.refresh()

    def elapsed(self) -> float:
        seconds = time.perf_counter() - self._t0
        if self._bar is not None:
            self._bar.update(1)
        return seconds

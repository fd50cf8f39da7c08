"""INT8 step: explicit quantization (QuantizeLinear/DequantizeLinear) by Model Optimizer, calibrated on real images.

The output is what TensorRT's strongly typed INT8 path takes: symmetric signed INT8
(zero point 0, int8), per-output-channel weight scales, per-tensor activation scales
from entropy or max calibration, and everything not quantized left in FP32
(``high_precision_dtype="fp32"``; Model Optimizer's default "fp16" casts the attention
to FP16 and breaks the CAM, docs/design.md section 4).

Kept out of quantization, found by structure:

- every MatMul -> Softmax -> MatMul attention chain and the Reshape/Transpose nodes
  feeding it (so TensorRT sees a float attention pattern, not INT8 MatMuls);
- every other consumer of a tensor that feeds an attention chain (in DA-COVID Net: the
  CAM residual ``beta * out + A``). ONNX Runtime's quantizer puts one shared Q/DQ pair
  on a tensor for all consumers, so quantizing that Add would also quantize the CAM's
  input ``A``, whose ``A A^T`` energies (~2e6) amplify any rounding.

The result is checked (:func:`dacovid_export.calibration.qdq.check_qdq`) and cached
(:mod:`dacovid_export.calibration.cache`): a second call with the same source model,
calibration images, method and tool versions copies the cached model and does not
calibrate again. Calibration runs with ONNX Runtime's CPU provider only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.artifacts.onnx_graph import (
    AttentionChain,
    consumers,
    find_attention_chains,
)
from dacovid_export.calibration.cache import CalibrationCache, cache_key
from dacovid_export.calibration.data import CalibrationSet
from dacovid_export.calibration.graph import (
    SourceModel,
    batches_for_model,
    check_calibration_array,
    check_output_path,
    ensure_node_names,
    exact_name_patterns,
    load_source_model,
    restore_metadata,
    write_checked_model,
)
from dacovid_export.calibration.qdq import QdqSummary, check_qdq
from dacovid_export.calibration.result import PrecisionResult
from dacovid_export.calibration.tooling import (
    CPU_PROVIDERS,
    modelopt_version,
    onnxruntime_version,
    tool_output_filtered,
)
from dacovid_export.core.deps import require
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.progress import progress_bar

if TYPE_CHECKING:
    import onnx

__all__ = [
    "CALIBRATION_METHODS",
    "RECIPE_VERSION",
    "CalibratedModel",
    "PreparedInt8",
    "calibrate_cached",
    "int8_details",
    "prepare_int8",
    "quantize_int8",
    "int8_exclusions",
]

CALIBRATION_METHODS = ("entropy", "max")
# bump when the quantization options or exclusion rules change: old cache entries then stop matching
RECIPE_VERSION = "int8-qdq/1"


def int8_exclusions(model: "onnx.ModelProto", chains: Sequence[AttentionChain]) -> list[str]:
    """Node names kept out of quantization: the attention chains, their feeders, and other consumers of their inputs."""
    readers = consumers(model.graph)
    excluded: list[str] = []
    for chain in chains:
        excluded.extend(chain.nodes)
        excluded.extend(chain.entry_nodes)
    for chain in chains:
        for tensor in chain.entry_tensors:
            excluded.extend(node.name for node in readers.get(tensor, []))
    return list(dict.fromkeys(excluded))


def _reader(input_name: str, batches: Sequence[np.ndarray], bar: Any) -> object:
    """An ONNX Runtime CalibrationDataReader over ``batches``, ticking ``bar`` per image."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    class ImageBatches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = [{input_name: batch} for batch in batches]
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._iter, None)
            if batch is not None:
                bar.update(len(batch[input_name]))
            return batch

        def get_first(self) -> dict[str, np.ndarray]:  # Model Optimizer's shape probes use it
            return self.batches[0]

        def rewind(self) -> None:
            self._iter = iter(self.batches)

        def __len__(self) -> int:
            return len(self.batches)

    return ImageBatches()


def _calibrate(src: SourceModel, array: np.ndarray, method: str, excluded: Sequence[str]) -> "object":
    """Run Model Optimizer's INT8 quantization in a private folder; returns the quantized ModelProto."""
    onnx = require("onnx", "write the INT8 model")
    quantization = require("modelopt.onnx.quantization", "quantize the ONNX model to INT8 (Model Optimizer)")
    with tempfile.TemporaryDirectory(prefix="dacovid-int8-") as tmp:
        # Model Optimizer rewrites its input in place (shape inference) and writes side
        # files beside it and beside the output: work on a private copy.
        work_path = Path(tmp) / "source.onnx"
        out_path = Path(tmp) / "quantized.onnx"
        onnx.save(src.model, str(work_path), save_as_external_data=False)
        # one image per step, or the model's fixed batch: N x 3 x S x S -> [B x 3 x S x S]
        batches = batches_for_model(array, src, purpose="int8")
        bar = progress_bar(total=sum(len(b) for b in batches), desc=f"INT8 calibration ({method})", unit="img", auto=True)
        reader = _reader(src.input_name, batches, bar)
        try:
            with tool_output_filtered():
                quantization.quantize(
                    onnx_path=str(work_path),
                    quantize_mode="int8",
                    calibration_method=method,
                    calibration_data_reader=reader,
                    calibration_eps=list(CPU_PROVIDERS),
                    nodes_to_exclude=exact_name_patterns(excluded),
                    disable_mha_qdq=True,
                    high_precision_dtype="fp32",
                    use_external_data_format=False,
                    output_path=str(out_path),
                    log_level="WARNING",
                )
        finally:
            bar.close()
        return onnx.load(str(out_path))


@dataclasses.dataclass(frozen=True)
class CalibratedModel:
    """A quantized model in memory, with where it came from (the calibration cache or a fresh run)."""

    model: "object"  # onnx.ModelProto, metadata restored from the source
    model_bytes: bytes
    method: str
    key: str
    cache_path: Path | None
    cache_hit: bool
    fields: dict[str, object]


def calibrate_cached(
    src: SourceModel,
    calibration: CalibrationSet,
    array: np.ndarray,
    method: str,
    excluded: Sequence[str],
    cache: CalibrationCache,
) -> CalibratedModel:
    """Quantize ``src`` with ``method`` (or copy the cached result of the same inputs); nothing is written but the cache."""
    if method not in CALIBRATION_METHODS:
        raise UserInputError(f"calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    fields: dict[str, object] = {
        "recipe": RECIPE_VERSION,
        "source_sha256": src.sha256,
        "calibration_sha256": calibration.sha256,
        "calibration_array_sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest(),
        "calibration_shape": list(array.shape),
        "method": method,
        "modelopt": modelopt_version(),
        "onnxruntime": onnxruntime_version(),
    }
    key = cache_key(fields)
    onnx = require("onnx", "read the INT8 model")
    cached = cache.lookup(key)
    if cached is not None:
        model_bytes = cached.read_bytes()
        model = onnx.load_from_string(model_bytes)
        return CalibratedModel(model, model_bytes, method, key, cached, True, fields)
    model = _calibrate(src, array, method, excluded)
    restore_metadata(model, src.model)
    model_bytes = model.SerializeToString()
    stored = cache.store(key, model_bytes, fields)
    return CalibratedModel(model, model_bytes, method, key, stored, False, fields)


def quantize_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    calibration: CalibrationSet,
    method: str = "entropy",
    cache_dir: str | os.PathLike[str] | None = None,
) -> PrecisionResult:
    """Write an explicitly quantized (Q/DQ, S8S8, per-channel weights) version of the FP32 ONNX model ``source``.

    ``calibration``: images from :func:`load_calibration_set`, preprocessed for this model.
    ``method``: ``"entropy"`` (KL-divergence thresholds, TensorRT's classic default) or
    ``"max"`` (absolute maximum). ``cache_dir``: where calibrated models are cached
    (default ``~/.cache/dacovid-export/calibration``, honouring ``XDG_CACHE_HOME``).
    The output is checked and written atomically; on any error ``output`` is left as it was.
    """
    started = time.perf_counter()
    if method not in CALIBRATION_METHODS:
        raise UserInputError(f"calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if not isinstance(calibration, CalibrationSet):
        raise UserInputError(
            f"calibration of type {type(calibration).__name__}: give a CalibrationSet from load_calibration_set()"
        )
    prepared = prepare_int8(source, output, calibration)
    calibrated = calibrate_cached(
        prepared.src, calibration, prepared.array, method, prepared.excluded, CalibrationCache(cache_dir)
    )
    summary = check_qdq(calibrated.model, prepared.chains)
    assert prepared.output is not None  # given above
    digest = write_checked_model(calibrated.model_bytes, prepared.output)
    return PrecisionResult(
        precision="int8",
        fp32_nodes=summary.fp32_nodes,
        seconds=time.perf_counter() - started,
        cache_hit=calibrated.cache_hit,
        details=int8_details(prepared, calibration, calibrated, summary, digest, tool="modelopt.onnx.quantization.quantize"),
    )


@dataclasses.dataclass(frozen=True)
class PreparedInt8:
    """An FP32 source ready to quantize: checked, node names set, its attention chains and the nodes kept FP32."""

    src: SourceModel
    output: Path | None  # None: the step writes no model (it only measures)
    array: np.ndarray  # the calibration images, N x 3 x S x S float32, checked against the model's input
    chains: tuple[AttentionChain, ...]
    excluded: list[str]  # kept out of INT8 by structure (attention chains and their feeders)


def prepare_int8(
    source: str | os.PathLike[str], output: str | os.PathLike[str] | None, calibration: CalibrationSet
) -> PreparedInt8:
    """The set-up every INT8 step shares (plain, guarded, measured only): the same checks and placement rules.

    ``output``: the file the step will write (checked now), or ``None`` when it writes nothing.
    """
    src = load_source_model(source)
    output = None if output is None else check_output_path(src.path, output)
    array = check_calibration_array(calibration.array, src)
    ensure_node_names(src.model)
    chains = tuple(find_attention_chains(src.model))
    return PreparedInt8(src, output, array, chains, int8_exclusions(src.model, chains))


def int8_details(
    prepared: PreparedInt8,
    calibration: CalibrationSet,
    calibrated: CalibratedModel,
    summary: QdqSummary,
    digest: str,
    *,
    tool: str,
) -> dict[str, Any]:
    """What an INT8 model's metadata says about how it was made (``precision_details`` / the ONNX metadata)."""
    return {
        "tool": tool,
        "recipe": RECIPE_VERSION,
        "quantize_mode": "int8",
        "method": calibrated.method,
        "high_precision_dtype": "fp32",
        "symmetric": True,
        "per_channel_weights": True,
        "weights": "fp32 initializers behind QuantizeLinear/DequantizeLinear (TensorRT folds them)",
        "calibration": calibration.describe(),
        "excluded_nodes": list(prepared.excluded),
        "attention_chains": [{"softmax": c.softmax, "nodes": list(c.nodes)} for c in prepared.chains],
        "qdq": summary.to_dict(),
        "cache": {
            "key": calibrated.key,
            "path": None if calibrated.cache_path is None else str(calibrated.cache_path),
            "hit": calibrated.cache_hit,
        },
        "source_sha256": prepared.src.sha256,
        "output_sha256": digest,
        "providers": ["CPUExecutionProvider"],
        "modelopt": calibrated.fields["modelopt"],
        "onnxruntime": calibrated.fields["onnxruntime"],
    }

"""FP16 step: a mixed-precision ONNX model made by Model Optimizer's AutoCast.

What stays FP32, and why:

- Every MatMul -> Softmax -> MatMul attention chain (PAM and CAM), always, found by
  structure (:func:`dacovid_export.artifacts.onnx_graph.find_attention_chains`) and handed
  to AutoCast as ``nodes_to_exclude``. The CAM energies reach ~2e6 and PAM's ~9e2
  (docs/design.md section 4), far past FP16's 65,504, and a calibration sample can miss the
  image that overflows, so this rule does not depend on data.
- Any other node whose inputs or outputs exceed ``data_max`` (512, AutoCast's default:
  FP16's spacing there is 0.5) on the range-check data, or whose initializers exceed
  FP16's range. The range check runs the FP32 model in ONNX Runtime (CPU provider) on
  real calibration images when ``calibration`` is given, otherwise on AutoCast's
  random inputs in [-1, 1].
- Graph inputs and outputs stay float32 (``keep_io_types``), so callers feed and read
  the same arrays as for the FP32 model.

AutoCast's range check keeps every intermediate tensor of every image in memory
(about 0.45 GB per 224 x 224 image for DA-COVID Net), so at most ``max_range_images``
evenly spaced calibration images are used for it; a line on stderr says when that
happens. The attention rule above makes the check's sample size matter little.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dacovid_export.artifacts.onnx_graph import find_attention_chains
from dacovid_export.calibration.data import CalibrationSet
from dacovid_export.calibration.graph import (
    batches_for_model,
    check_calibration_array,
    check_output_path,
    ensure_node_names,
    exact_name_patterns,
    float32_compute_nodes,
    float32_output_nodes,
    load_source_model,
    restore_metadata,
    write_checked_model,
)
from dacovid_export.calibration.result import PrecisionResult
from dacovid_export.calibration.tooling import (
    CPU_PROVIDERS,
    modelopt_version,
    onnxruntime_version,
    tool_output_filtered,
)
from dacovid_export.core.deps import require
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.log import get_logger
from dacovid_export.core.validate import check_int

__all__ = ["FP16_DATA_MAX", "MAX_RANGE_CHECK_IMAGES", "convert_fp16"]

_log = get_logger("calibration")

FP16_DATA_MAX = 512.0
MAX_RANGE_CHECK_IMAGES = 8


def convert_fp16(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    calibration: "np.ndarray | CalibrationSet | None" = None,
    max_range_images: int = MAX_RANGE_CHECK_IMAGES,
    keep_fp32: Sequence[str] = (),
) -> PrecisionResult:
    """Write a mixed FP16/FP32 version of the FP32 ONNX model ``source`` to ``output``.

    ``calibration``: preprocessed images (float32 ``N x 3 x S x S``, or a
    :class:`CalibrationSet`) for AutoCast's range check; without it AutoCast uses random
    inputs and the attention rule alone protects the overflowing nodes.
    ``max_range_images``: at most this many (evenly spaced) images go to the range check,
    which holds all intermediate tensors in memory (a model with a fixed batch size B
    gets whole batches: at least B images). The output is checked with ``onnx.checker``
    and written atomically; on any error ``output`` is left as it was.
    ``keep_fp32``: names of further nodes kept FP32 (the FP16 guard's fallback,
    :mod:`dacovid_export.calibration.fp16_guard`); a name not in the graph is refused.
    """
    started = time.perf_counter()
    src = load_source_model(source)
    output = check_output_path(src.path, output)
    check_int("max_range_images", max_range_images, 1)
    if isinstance(calibration, CalibrationSet):
        calibration = calibration.array
    range_data = None if calibration is None else check_calibration_array(calibration, src)
    batch = src.static_batch
    limit = max_range_images if batch is None else max(1, max_range_images // batch) * batch
    if range_data is not None and len(range_data) > limit:
        picks = np.unique(np.linspace(0, len(range_data) - 1, limit).round().astype(int))
        _log.info(f"fp16: AutoCast's range check holds every intermediate tensor in memory; using {len(picks)} of the "
            f"{len(range_data)} calibration images (evenly spaced) for it")
        range_data = range_data[picks]
    if range_data is not None:
        range_data = np.concatenate(batches_for_model(range_data, src, purpose="fp16"))

    onnx = require("onnx", "write the FP16 model")
    autocast = require("modelopt.onnx.autocast", "convert the ONNX model to FP16 (Model Optimizer AutoCast)")

    ensure_node_names(src.model)
    chains = find_attention_chains(src.model)
    keep_fp32_attention = [name for chain in chains for name in chain.nodes]
    names = {node.name for node in src.model.graph.node}
    if isinstance(keep_fp32, (str, bytes)) or not all(isinstance(n, str) for n in keep_fp32):
        raise UserInputError(f"keep_fp32={keep_fp32!r}: give a sequence of node names")
    unknown = sorted(set(keep_fp32) - names)
    if unknown:
        raise UserInputError(f"keep_fp32 names nodes {unknown[:5]} that {str(src.path)!r} does not have")
    requested = [name for name in keep_fp32 if name not in set(keep_fp32_attention)]
    keep_fp32 = [*keep_fp32_attention, *requested]
    with tempfile.TemporaryDirectory(prefix="dacovid-fp16-") as tmp:
        # AutoCast reads a path; a private copy also keeps its side files out of the user's folder
        work_path = Path(tmp) / "source.onnx"
        onnx.save(src.model, str(work_path), save_as_external_data=False)
        data_path = None
        if range_data is not None:
            data_path = Path(tmp) / "calibration.npz"
            np.savez(data_path, **{src.input_name: np.ascontiguousarray(range_data)})
        with tool_output_filtered():
            converted = autocast.convert_to_mixed_precision(
                onnx_path=str(work_path),
                low_precision_type="fp16",
                nodes_to_exclude=exact_name_patterns(keep_fp32),
                data_max=FP16_DATA_MAX,
                keep_io_types=True,
                calibration_data=None if data_path is None else str(data_path),
                providers=list(CPU_PROVIDERS),
            )
    restore_metadata(converted, src.model)

    still_fp32 = set(float32_output_nodes(converted))
    lost = [name for name in keep_fp32_attention if name not in still_fp32]
    if lost:
        raise CheckFailedError(f"AutoCast converted attention nodes {lost} to FP16 although they were excluded")
    io_types = {vi.name: vi.type.tensor_type.elem_type for vi in [*converted.graph.input, *converted.graph.output]}
    not_fp32 = [name for name, t in io_types.items() if t != onnx.TensorProto.FLOAT]
    if not_fp32:
        raise CheckFailedError(f"the FP16 model's inputs/outputs {not_fp32} are not float32")
    digest = write_checked_model(converted, output)
    fp32_nodes = float32_compute_nodes(converted)

    range_rule = [name for name in fp32_nodes if name not in set(keep_fp32)]
    details = {
        "tool": "modelopt.onnx.autocast.convert_to_mixed_precision",
        "low_precision_type": "fp16",
        "keep_io_types": True,
        "data_max": FP16_DATA_MAX,
        "range_check": "calibration images" if range_data is not None else "random inputs in [-1, 1]",
        "range_check_images": 0 if range_data is None else int(len(range_data)),
        "calibration_images": 0 if calibration is None else int(len(calibration)),
        "attention_chains": [{"softmax": c.softmax, "nodes": list(c.nodes)} for c in chains],
        "fp32_by_attention_rule": keep_fp32_attention,
        "fp32_by_guard": requested,
        "fp32_by_autocast_rules": range_rule,
        "source_sha256": src.sha256,
        "output_sha256": digest,
        "providers": ["CPUExecutionProvider"],
        "modelopt": modelopt_version(),
        "onnxruntime": onnxruntime_version(),
    }
    return PrecisionResult(
        precision="fp16",
        fp32_nodes=fp32_nodes,
        seconds=time.perf_counter() - started,
        cache_hit=False,
        details=details,
    )

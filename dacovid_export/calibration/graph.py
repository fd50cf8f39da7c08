"""ONNX model handling for the precision step: load and check a source model, name its nodes, write outputs.

The graph's anatomy (attention chains, producers, constants) lives in
:mod:`dacovid_export.artifacts.onnx_graph`, shared with the export checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dacovid_export.artifacts.onnx_graph import (
    PASS_THROUGH_OPS,
    external_data_locations,
    tensor_types,
)
from dacovid_export.core.deps import require
from dacovid_export.core.errors import CheckFailedError, UserInputError, first_line
from dacovid_export.core.fileio import atomic_path, sha256_file
from dacovid_export.core.log import get_logger

if TYPE_CHECKING:
    import onnx

__all__ = [
    "NON_COMPUTE_OPS",
    "SourceModel",
    "load_source_model",
    "check_output_path",
    "check_calibration_array",
    "batches_for_model",
    "ensure_node_names",
    "exact_name_patterns",
    "float32_output_nodes",
    "float32_compute_nodes",
    "restore_metadata",
    "write_checked_model",
]

_log = get_logger("calibration")

# nodes that only carry, route or clamp data: never reported as "FP32 compute"
NON_COMPUTE_OPS = PASS_THROUGH_OPS | {"Relu", "Constant", "Shape", "Gather", "Concat", "Slice", "Split", "Expand"}


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """A checked FP32 source model, loaded with its weights."""

    path: Path
    model: "onnx.ModelProto"
    sha256: str  # of the .onnx file plus any external data files, see :func:`load_source_model`
    input_name: str
    input_shape: tuple[int | str, ...]  # e.g. ("batch", 3, 224, 224)

    @property
    def static_batch(self) -> int | None:
        """The fixed batch size of a model exported without a dynamic batch, else None."""
        first = self.input_shape[0]
        return first if isinstance(first, int) and first > 0 else None


def _onnx() -> Any:  # the onnx module, imported when first needed
    return require("onnx", "read and write ONNX models")


def load_source_model(path: str | os.PathLike[str]) -> SourceModel:
    """Load and check an FP32 ONNX model with one image input; :class:`UserInputError` otherwise.

    ``sha256`` covers the ``.onnx`` file and, when weights are stored externally (the
    torch dynamo exporter's default), every external data file it references, so a cache
    keyed by it notices changed weights.
    """
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"ONNX model {str(path)!r} does not exist or is not a file")
    try:
        header = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise UserInputError(f"{str(path)!r} is not an ONNX model (it cannot be parsed: {exc})") from exc
    if not header.graph.node or not header.graph.input or not header.graph.output:
        raise UserInputError(f"{str(path)!r} is not a usable ONNX model (empty graph, or no inputs/outputs)")
    digest = hashlib.sha256(sha256_file(path).encode("ascii"))
    locations = external_data_locations(header)
    for location in locations:
        data_path = path.parent / location
        if not data_path.is_file():
            raise UserInputError(
                f"ONNX model {str(path)!r} keeps its weights in {str(data_path)!r}, which is missing: "
                "keep the .onnx and its data file together"
            )
        digest.update(location.encode("utf-8") + b"\0" + sha256_file(data_path).encode("ascii"))
    model = header  # weights stored inline are already loaded
    try:
        if locations:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except (ValueError, OSError, onnx.checker.ValidationError) as exc:
        raise UserInputError(f"ONNX model {str(path)!r} is invalid: {first_line(exc)}") from exc

    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserInputError(
            f"ONNX model {str(path)!r} has {len(inputs)} inputs {[i.name for i in inputs]}; the precision step "
            "expects one image input (N x 3 x S x S), as dacovid-export onnx writes"
        )
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UserInputError(
            f"ONNX model {str(path)!r} takes {onnx.TensorProto.DataType.Name(tensor_type.elem_type)} input; "
            "give the FP32 export (the precision step converts FP32 to FP16 or INT8)"
        )
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim)
    if len(shape) != 4 or shape[1] != 3:
        raise UserInputError(
            f"ONNX model {str(path)!r} has input shape {list(shape)}; expected N x 3 x S x S (an image classifier)"
        )
    quantized = [n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if quantized:
        raise UserInputError(
            f"ONNX model {str(path)!r} is already quantized ({len(quantized)} Q/DQ nodes); give the FP32 export"
        )
    if any(init.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16) for init in model.graph.initializer):
        raise UserInputError(
            f"ONNX model {str(path)!r} already holds FP16/BF16 weights (a converted model); give the FP32 export"
        )
    return SourceModel(path=path, model=model, sha256=digest.hexdigest(), input_name=inputs[0].name, input_shape=shape)


def check_output_path(source: Path, output: str | os.PathLike[str]) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise UserInputError(f"output {str(output)!r}: give a path ending in .onnx")
    if output.resolve() == source.resolve():
        raise UserInputError(f"output {str(output)!r} is the source model; choose another path")
    if output.is_dir():
        raise UserInputError(f"output {str(output)!r} is a folder; give a file path ending in .onnx")
    return output


def check_calibration_array(calibration: object, source: SourceModel) -> np.ndarray:
    """``calibration`` as float32 ``N x 3 x S x S`` matching the model's input; :class:`UserInputError` otherwise."""
    if not isinstance(calibration, np.ndarray):
        raise UserInputError(
            f"calibration data of type {type(calibration).__name__}: give a float32 numpy array N x 3 x S x S "
            "(e.g. CalibrationSet.array)"
        )
    expected = source.input_shape[1:]
    if calibration.ndim != 4 or len(calibration) == 0 or any(
        isinstance(want, int) and want > 0 and got != want for got, want in zip(calibration.shape[1:], expected)
    ):
        raise UserInputError(
            f"calibration data of shape {list(calibration.shape)} does not fit the model input "
            f"{list(source.input_shape)}: preprocess the calibration images with the model's preprocessing"
        )
    if calibration.dtype != np.float32:
        raise UserInputError(f"calibration data of dtype {calibration.dtype}: give float32 (preprocessed images)")
    if not np.all(np.isfinite(calibration)):
        raise UserInputError("calibration data contains NaN or infinite values")
    return calibration


def batches_for_model(array: np.ndarray, source: SourceModel, *, purpose: str) -> list[np.ndarray]:
    """``array`` cut into the batches ``source`` accepts: single images, or its fixed batch size.

    With a fixed batch size B, images beyond the last full batch are left out (a line on
    stderr says how many); fewer than B images raise :class:`UserInputError`.
    """

    size = source.static_batch or 1
    usable = len(array) // size * size
    if usable == 0:
        raise UserInputError(
            f"{len(array)} calibration image(s) for a model with a fixed batch of {size}: give at least {size}"
        )
    if usable < len(array):
        _log.info(f"{purpose}: the model has a fixed batch of {size}; using {usable} of {len(array)} calibration images")
    return [np.ascontiguousarray(array[i : i + size]) for i in range(0, usable, size)]


def ensure_node_names(model: "onnx.ModelProto") -> None:
    """Give every unnamed node a unique name, so exclusions by name can reach it (in place)."""
    used = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def exact_name_patterns(names: Iterable[str]) -> list[str]:
    """Regexes that match exactly these node names (Model Optimizer takes node names as ``re.match`` patterns)."""
    import re

    return [re.escape(name) + "$" for name in sorted(set(names))]


def float32_output_nodes(model: "onnx.ModelProto") -> tuple[str, ...]:
    """Nodes other than Cast with at least one float32 output, in graph order (types from ONNX inference)."""
    onnx = _onnx()
    # type inference needs no weights: infer on a copy without initializer data
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    for init in skeleton.graph.initializer:
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            init.ClearField(field)
    inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False)
    types = tensor_types(inferred)
    return tuple(
        node.name
        for node in inferred.graph.node
        if node.op_type != "Cast" and any(types.get(o) == onnx.TensorProto.FLOAT for o in node.output)
    )


def float32_compute_nodes(model: "onnx.ModelProto") -> tuple[str, ...]:
    """Like :func:`float32_output_nodes`, without data-movement nodes (:data:`NON_COMPUTE_OPS`)."""
    ops = {node.name: node.op_type for node in model.graph.node}
    return tuple(name for name in float32_output_nodes(model) if ops.get(name) not in NON_COMPUTE_OPS)


def restore_metadata(model: "onnx.ModelProto", source: "onnx.ModelProto") -> None:
    """Put the source's ``metadata_props`` back where a converter dropped or changed them (in place)."""
    present = {p.key: p for p in model.metadata_props}
    for prop in source.metadata_props:
        if prop.key in present:
            present[prop.key].value = prop.value
        else:
            model.metadata_props.add(key=prop.key, value=prop.value)
    for attr in ("producer_name", "producer_version", "doc_string"):
        if not getattr(model, attr) and getattr(source, attr):
            setattr(model, attr, getattr(source, attr))


def write_checked_model(model: "onnx.ModelProto | bytes", output: str | os.PathLike[str]) -> str:
    """Write ``model`` (a proto or its serialized bytes) atomically as one file once ``onnx.checker`` passes.

    Returns the written file's sha256. A model that fails the full check raises
    :class:`CheckFailedError` and leaves ``output`` untouched.
    """
    onnx = _onnx()
    output = Path(output)
    with atomic_path(output) as tmp:
        if isinstance(model, bytes):
            tmp.write_bytes(model)
        else:
            onnx.save(model, str(tmp), save_as_external_data=False)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise CheckFailedError(
                f"the converted model failed onnx.checker ({first_line(exc)}); nothing was written "
                f"to {str(output)!r}"
            ) from exc
        digest = sha256_file(tmp)
    return digest

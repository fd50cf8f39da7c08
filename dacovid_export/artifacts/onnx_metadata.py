"""The self-description stored in an ONNX model's ``metadata_props``, and its readers.

``metadata_props`` is a string-to-string map, so lists and dicts are stored as
JSON. Keys written by :func:`dacovid_export.export.onnx_export.export_onnx`:

``format``/``format_version`` (``dacovid-onnx``/``1``), ``class_names`` (JSON
list), ``image_size``, ``mean``/``std`` (JSON lists, 0-1 scale),
``preprocessing`` (the whole :class:`~dacovid_export.data.preprocessing.Preprocessing`
dict), ``precision``, ``source_sha256`` (the checkpoint's), ``source_name``,
``model_config``, ``versions`` (JSON) plus ``torch_version``/``onnx_version``/
``dacovid_export_version``, ``producer`` (JSON), ``opset``, ``max_batch`` (only
for a static batch), ``suggested_max_batch`` (a dynamic batch's ``--max-batch``
hint for engine profiles), and for FP16/INT8 models ``fp32_nodes``, ``parent_sha256``
and ``calibration``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.core.deps import require
from dacovid_export.core.errors import UserInputError, first_line
from dacovid_export.core.fileio import refuse_scratch
from dacovid_export.core.limits import MAX_CLASSES, check_batch_size, check_count
from dacovid_export.data.fingerprint import ImageRecord
from dacovid_export.data.preprocessing import Preprocessing

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ONNX_FORMAT",
    "ONNX_FORMAT_VERSION",
    "write_metadata",
    "read_metadata",
    "load_onnx",
    "metadata_of",
    "IMAGE_RECORD_KEY",
    "image_record_in",
    "read_onnx_info",
    "info_from_model",
]

ONNX_FORMAT = "dacovid-onnx"
ONNX_FORMAT_VERSION = 1
_REQUIRED_KEYS = ("class_names", "preprocessing", "precision", "source_sha256")


def write_metadata(model: "onnx.ModelProto", values: Mapping[str, Any]) -> None:
    """Set ``metadata_props`` entries in place; strings are stored as they are, anything else as JSON.

    Existing keys are replaced, others are kept, so a precision step can re-stamp
    only what changed.
    """
    encoded = {str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=False) for k, v in values.items()}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in encoded]
    del model.metadata_props[:]
    for key, value in kept + list(encoded.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def metadata_of(model: "onnx.ModelProto") -> dict[str, str]:
    """The raw ``metadata_props`` of a loaded model (strings; JSON values undecoded)."""
    return {p.key: p.value for p in model.metadata_props}


IMAGE_RECORD_KEY = "image_record"


def image_record_in(meta: Mapping[str, str], name: str) -> ImageRecord | None:
    """The checkpoint's record of its training images that an exported model carries (None: it carries none)."""
    raw = meta.get(IMAGE_RECORD_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{name!r}: its image_record metadata is not valid JSON ({exc}); re-export the model") from exc
    record = ImageRecord.from_dict(data, repr(name))
    source = meta.get("source_name", "its checkpoint")
    return ImageRecord(record.train, record.val, f"the record of checkpoint {source!r}")


def load_onnx(path: str | os.PathLike[str]) -> "onnx.ModelProto":
    """Load an ONNX model; a missing, corrupt or non-ONNX file, or another run's scratch, raises :class:`UserInputError`."""
    refuse_scratch(path)
    onnx = require("onnx", "read ONNX models")
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"ONNX model {str(path)!r} does not exist or is not a file")
    from google.protobuf.message import Error as ProtobufError

    try:
        model = onnx.load(str(path))
    except (ProtobufError, OSError, ValueError, RuntimeError) as exc:
        raise UserInputError(f"{str(path)!r} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)})") from exc
    # protobuf happily decodes many non-ONNX byte strings into an empty message
    if not model.graph.node or not model.graph.input or not model.opset_import:
        raise UserInputError(f"{str(path)!r} is not an ONNX model (no graph, inputs or opset): corrupt or another format")
    return model


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata_props`` of the ONNX file at ``path`` as a ``str -> str`` dict (JSON values undecoded)."""
    return metadata_of(load_onnx(path))


def read_onnx_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    """:class:`ArtifactInfo` of an ONNX model written by this tool; :class:`UserInputError` otherwise."""
    return info_from_model(load_onnx(path), path)


def info_from_model(model: "onnx.ModelProto", path: str | os.PathLike[str]) -> ArtifactInfo:
    """:class:`ArtifactInfo` from an already loaded model (``path`` names it in messages)."""
    meta = metadata_of(model)
    name = str(path)
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if meta.get("format") != ONNX_FORMAT or missing:
        raise UserInputError(
            f"{name!r} is an ONNX model without dacovid-export metadata"
            + (f" (missing {', '.join(missing)})" if missing else "")
            + "; export it with 'dacovid-export onnx CHECKPOINT -o OUT.onnx'"
        )
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > ONNX_FORMAT_VERSION:
        raise UserInputError(
            f"{name!r} has dacovid-onnx metadata version {meta.get('format_version')!r}; this dacovid-export "
            f"reads version {ONNX_FORMAT_VERSION}: re-export the model or upgrade dacovid-export"
        )
    class_names = _json(meta, "class_names", list, name)
    try:
        # the same bounds as the CLI's, at the one place an ONNX artifact's metadata is read
        check_count(len(class_names), "number of class_names", MAX_CLASSES, minimum=2)
        preprocessing = Preprocessing.from_dict(_json(meta, "preprocessing", dict, name))
    except UserInputError as exc:
        raise UserInputError(f"{name!r}: metadata {exc} (edited or damaged metadata: re-export the model)") from exc
    versions = _json(meta, "versions", dict, name) if "versions" in meta else {}

    input_name, batch_dim, input_shape = _graph_input(model, name)
    _check_consistent(meta, preprocessing, input_shape, name)
    _check_precision(model, meta["precision"], name)
    output_names = [o.name for o in model.graph.output]
    if len(output_names) != 1:
        raise UserInputError(f"{name!r} has {len(output_names)} outputs {output_names}; expected one (logits)")
    # a fixed batch dimension means the model only runs at exactly that batch size
    min_batch, max_batch = (batch_dim, batch_dim) if isinstance(batch_dim, int) else (1, None)
    if isinstance(batch_dim, int):
        check_batch_size(batch_dim, f"{name!r}: fixed batch dimension")

    extra: dict[str, Any] = {
        "opset": _default_opset(model),
        "input_shape": input_shape,
        "file_bytes": Path(path).stat().st_size if Path(path).is_file() else None,
    }
    for key in ("producer", "model_config", "calibration", "fp32_nodes"):
        if key in meta:
            extra[key] = _json(meta, key, (dict, list), name)
    for key in ("source_name", "parent_sha256"):
        if key in meta:
            extra[key] = meta[key]
    if "suggested_max_batch" in meta:
        # a dynamic model's hint for engine profiles (``--max-batch`` at export)
        extra["suggested_max_batch"] = check_batch_size(
            _positive_int(meta, "suggested_max_batch", name), f"{name!r}: metadata entry 'suggested_max_batch'"
        )
    return ArtifactInfo(
        path=name,
        kind="onnx",
        class_names=tuple(str(c) for c in class_names),
        preprocessing=preprocessing,
        precision=meta["precision"],
        source_sha256=meta["source_sha256"],
        versions={str(k): str(v) for k, v in versions.items()},
        input_name=input_name,
        output_name=output_names[0],
        min_batch=min_batch,
        max_batch=max_batch,
        extra=extra,
    )


def _check_consistent(meta: Mapping[str, str], preprocessing: Preprocessing, input_shape: list[int | str], name: str) -> None:
    """The convenience copies (top-level ``image_size``/``mean``/``std``) and the graph must agree with ``preprocessing``.

    A model whose metadata contradicts itself cannot say how to feed it; whichever
    copy a consumer reads, it must get the same answer, so a contradiction is refused.
    """
    import math

    problems = []
    if "image_size" in meta:
        try:
            top = int(meta["image_size"])
        except ValueError:
            top = None
        if top != preprocessing.image_size:
            problems.append(f"image_size {meta['image_size']!r} vs preprocessing image_size {preprocessing.image_size}")
    for key in ("mean", "std"):
        if key not in meta:
            continue
        expected = getattr(preprocessing, key)
        try:
            top_values = [float(v) for v in json.loads(meta[key])]
            same = len(top_values) == len(expected) and all(
                math.isclose(a, b, rel_tol=0, abs_tol=1e-7) for a, b in zip(top_values, expected)
            )
        except (ValueError, TypeError):
            same = False
        if not same:
            problems.append(f"{key} {meta[key]} vs preprocessing {key} {list(expected)}")
    spatial = [d for d in input_shape[1:] if isinstance(d, int)]
    if len(spatial) == 3 and spatial != [3, preprocessing.image_size, preprocessing.image_size]:
        problems.append(f"graph input {input_shape} vs preprocessing image_size {preprocessing.image_size}")
    if problems:
        raise UserInputError(
            f"{name!r}: its metadata contradicts itself ({'; '.join(problems)}), so it cannot say how to feed the model; "
            "re-export it with 'dacovid-export onnx'"
        )


_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# the floating-point precisions, whose graphs hold no Q/DQ: a quantized precision (int8 today; a new one registered in
# calibration/precisions) may, so adding one needs no change here
_FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")


def _check_precision(model: "onnx.ModelProto", precision: str, name: str) -> None:
    """A Q/DQ graph is never described as a floating-point model (an unknown precision is the caller's to refuse)."""
    if precision in _FLOAT_PRECISIONS and any(node.op_type in _QDQ_OPS for node in model.graph.node):
        raise UserInputError(
            f"{name!r} says it is {precision} but its graph holds QuantizeLinear/DequantizeLinear (INT8) nodes: it is "
            "not a finished dacovid-export model (e.g. a calibration-cache entry); use the INT8 model that "
            "'dacovid-export onnx --precision int8' wrote"
        )


def _json(meta: Mapping[str, str], key: str, kind: type | tuple[type, ...], name: str) -> Any:
    try:
        value = json.loads(meta[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{name!r}: metadata entry {key!r} is missing or not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise UserInputError(f"{name!r}: metadata entry {key!r} = {meta[key]!r} has the wrong type")
    return value


def _positive_int(meta: Mapping[str, str], key: str, name: str) -> int:
    try:
        value = int(meta[key])
    except ValueError as exc:
        raise UserInputError(f"{name!r}: metadata entry {key!r} = {meta[key]!r} is not an integer") from exc
    if value < 1:
        raise UserInputError(f"{name!r}: metadata entry {key!r} = {value} must be >= 1")
    return value


def _graph_input(model: "onnx.ModelProto", name: str) -> tuple[str, int | str, list[int | str]]:
    """Name, batch dimension (int if fixed, symbol name if dynamic) and shape of the one real input."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserInputError(f"{name!r} has {len(inputs)} inputs {[i.name for i in inputs]}; expected one image input")
    shape: list[int | str] = []
    for dim in inputs[0].type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or "?")
    if len(shape) != 4:
        raise UserInputError(f"{name!r}: input {inputs[0].name!r} has shape {shape}; expected N x 3 x S x S")
    batch = shape[0]
    if isinstance(batch, int) and batch < 1:
        batch = "?"
    return inputs[0].name, batch, shape


def _default_opset(model: "onnx.ModelProto") -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None

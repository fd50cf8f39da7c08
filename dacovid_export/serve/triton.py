"""A Triton Inference Server model repository for an engine or an ONNX model.

Layout written (Triton's model repository convention)::

    REPO/NAME/config.pbtxt          platform, batching, I/O, instances, our metadata as parameters
    REPO/NAME/labels.txt            class names, one per line (output label_filename)
    REPO/NAME/dacovid_metadata.json the engine's sidecar or the ONNX's ArtifactInfo, for audits
    REPO/NAME/1/model.plan          the TensorRT engine   (platform "tensorrt_plan")
    REPO/NAME/1/model.onnx          or the ONNX model     (platform "onnxruntime_onnx"),
                                    plus its external data files under their own names

Every file is written through a temporary file and a rename, model files
first and ``config.pbtxt`` last, so a Triton server polling the repository
never loads a half-written model. A TensorRT engine only loads in a Triton
whose TensorRT version matches the one that built it (``dacovid_tensorrt_version``
parameter), on a GPU of the recorded compute capability.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dacovid_export.artifacts.engine_metadata import (
    engine_artifact_info,
    read_engine_metadata,
    sidecar_path,
)
from dacovid_export.artifacts.info import ArtifactInfo, artifact_kind
from dacovid_export.artifacts.onnx_graph import external_data_locations
from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.artifacts.outputs import (
    check_outputs,
    companion_files,
)
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    same_file,
    sha256_file,
    verify_sha256,
)
from dacovid_export.core.versions import __version__

__all__ = ["TRITON_KINDS", "DEFAULT_ONNX_MAX_BATCH", "write_triton_repository", "triton_config_text"]

TRITON_KINDS = ("gpu", "cpu")
# An ONNX model with a dynamic batch has no upper bound of its own; 8 keeps a
# dynamic batch of 224x224 DA-COVID Net inputs within a few GiB of activations.
DEFAULT_ONNX_MAX_BATCH = 8
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 kept, quotes and control characters escaped)."""
    escaped = (
        str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def triton_config_text(
    *,
    name: str,
    platform: str,
    max_batch: int,
    input_name: str,
    output_name: str,
    image_size: int,
    num_classes: int,
    input_type: str = "TYPE_FP32",
    output_type: str = "TYPE_FP32",
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 100,
    instances: int = 1,
    kind: str = "gpu",
    label_filename: str | None = "labels.txt",
    default_model_filename: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> str:
    """The ``config.pbtxt`` text (Triton's ``ModelConfig`` protobuf in text format)."""
    lines = [
        f"name: {_pbtxt_string(name)}",
        f"platform: {_pbtxt_string(platform)}",
        f"max_batch_size: {int(max_batch)}",
    ]
    if default_model_filename:
        lines.append(f"default_model_filename: {_pbtxt_string(default_model_filename)}")
    lines += [
        "input [",
        "  {",
        f"    name: {_pbtxt_string(input_name)}",
        f"    data_type: {input_type}",
        f"    dims: [ 3, {int(image_size)}, {int(image_size)} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_pbtxt_string(output_name)}",
        f"    data_type: {output_type}",
        f"    dims: [ {int(num_classes)} ]",
    ]
    if label_filename:
        lines.append(f"    label_filename: {_pbtxt_string(label_filename)}")
    lines += ["  }", "]", "dynamic_batching {"]
    if preferred_batch_sizes:
        lines.append(f"  preferred_batch_size: [ {', '.join(str(int(b)) for b in preferred_batch_sizes)} ]")
    lines += [
        f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {int(instances)}",
        f"    kind: {'KIND_GPU' if kind == 'gpu' else 'KIND_CPU'}",
        "  }",
        "]",
    ]
    for key, value in (parameters or {}).items():
        lines += [
            "parameters {",
            f"  key: {_pbtxt_string(key)}",
            f"  value: {{ string_value: {_pbtxt_string(value)} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _onnx_external_files(path: Path) -> list[str]:
    """Locations (relative to the model's folder) of the external data files an ONNX model references, all present."""
    locations = external_data_locations(path)
    for location in locations:
        if Path(location).is_absolute() or ".." in Path(location).parts:
            raise UserInputError(
                f"{str(path)!r} stores weights at {location!r}, outside its own folder; re-save it with external data beside it"
            )
        if not (path.parent / location).is_file():
            raise UserInputError(f"{str(path)!r} references the external data file {location!r}, which is missing")
    return locations


def _validate(name: str, max_batch: int | None, instances: int, kind: str | None, max_queue_delay_us: int) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserInputError(f"model name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' or '-'")
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise UserInputError(f"max_batch={max_batch!r}: must be a positive integer")
    if isinstance(instances, bool) or not isinstance(instances, int) or not 1 <= instances <= 64:
        raise UserInputError(f"instances={instances!r}: must be an integer from 1 to 64")
    if kind is not None and kind not in TRITON_KINDS:
        raise UserInputError(f"kind={kind!r}: use 'gpu' or 'cpu'")
    if isinstance(max_queue_delay_us, bool) or not isinstance(max_queue_delay_us, int) or max_queue_delay_us < 0:
        raise UserInputError(f"max_queue_delay_us={max_queue_delay_us!r}: must be a non-negative integer")


def _common_parameters(info: ArtifactInfo, model_sha256: str) -> dict[str, str]:
    return {
        "dacovid_precision": info.precision,
        "dacovid_class_names": json.dumps(list(info.class_names), ensure_ascii=False),
        "dacovid_preprocessing": json.dumps(info.preprocessing.to_dict(), ensure_ascii=False),
        "dacovid_source_sha256": info.source_sha256,
        "dacovid_model_sha256": model_sha256,
        "dacovid_export_version": __version__,
    }


def write_triton_repository(
    model_path: str | os.PathLike[str],
    repo_dir: str | os.PathLike[str],
    *,
    name: str = "dacovid",
    max_batch: int | None = None,
    instances: int = 1,
    kind: str | None = None,
    max_queue_delay_us: int = 100,
    overwrite: bool = False,
) -> Path:
    """Write ``repo_dir/name`` for ``model_path`` (an engine or an ONNX model) and return that folder.

    ``max_batch``: Triton's ``max_batch_size``; defaults to the engine's profile
    maximum (and may not exceed it), for ONNX to the export's ``suggested_max_batch``
    or else :data:`DEFAULT_ONNX_MAX_BATCH`.
    ``instances``: model instances per GPU (or on the CPU). ``kind``: ``"gpu"``
    (default) or ``"cpu"`` (ONNX Runtime only). ``overwrite``: replace an
    existing ``repo_dir/name`` model; otherwise that is an error.
    """
    model_path, repo_dir = Path(model_path), Path(repo_dir)
    _validate(name, max_batch, instances, kind, max_queue_delay_us)
    file_kind = artifact_kind(model_path)
    if file_kind == "checkpoint":
        raise UserInputError(
            f"{str(model_path)!r} is a checkpoint; Triton serves an ONNX model or a TensorRT engine: "
            "export one with 'dacovid-export onnx' (and 'dacovid-export trt')"
        )
    if not model_path.is_file():
        raise UserInputError(f"{file_kind} {str(model_path)!r} does not exist or is not a file")
    model_dir = repo_dir / name
    # before any reading: the repository must be writable and no file of it may be the model itself
    check_outputs(
        inputs=[model_path],
        files={"repository file": model_dir / "config.pbtxt", "repository model": model_dir / "1" / "model.plan",
               "repository ONNX": model_dir / "1" / "model.onnx"},
        folders={"--repo": repo_dir},
    )
    if (model_dir / "config.pbtxt").exists() and not overwrite:
        raise UserInputError(
            f"{str(model_dir)!r} already holds a Triton model: choose another --name or pass --overwrite to replace it"
        )

    kind = kind or "gpu"
    metadata_doc: dict[str, Any]
    extra_files: list[str] = []
    if file_kind == "engine":
        meta = read_engine_metadata(model_path)
        info = engine_artifact_info(meta, model_path)
        if meta.runtime == "tensorrt-rtx":
            # Triton's tensorrt_plan backend links TensorRT, which cannot deserialize a TensorRT-RTX engine
            raise UserInputError(
                f"{str(model_path)!r} is a TensorRT-RTX engine, and Triton's TensorRT backend runs TensorRT engines "
                "only: build one with 'dacovid-export trt ... --runtime tensorrt' on the serving GPU, or serve the ONNX model"
            )
        if kind == "cpu":
            raise UserInputError("a TensorRT engine runs on a GPU only: drop --kind cpu (it is for ONNX models)")
        if meta.min_batch != 1:
            raise UserInputError(
                f"{str(model_path)!r} accepts batches from {meta.min_batch}, but Triton sends any batch from 1: "
                "rebuild it with --min-batch 1"
            )
        limit = meta.max_batch
        if max_batch is not None and max_batch > limit:
            raise UserInputError(
                f"max_batch={max_batch} exceeds the engine's profile maximum {limit}: use --max-batch {limit} "
                "or rebuild the engine with a larger --max-batch"
            )
        batch = max_batch if max_batch is not None else limit
        platform, filename = "tensorrt_plan", "model.plan"
        input_type, output_type = _TRITON_DTYPES[meta.input_dtype], _TRITON_DTYPES[meta.output_dtype]
        preferred = sorted({b for b in (meta.opt_batch, batch) if 1 < b <= batch})
        # the sidecar's hash is recorded as the plan's, so the plan must be the bytes that hash describes
        parameters = _common_parameters(
            info, verify_sha256(model_path, meta.engine_sha256, recorded_in=f"its sidecar {sidecar_path(model_path).name!r}")
        )
        parameters.update(
            {
                "dacovid_tensorrt_version": meta.tensorrt_version,
                "dacovid_gpu": meta.gpu_name,
                "dacovid_compute_capability": meta.compute_capability_str,
                "dacovid_hardware_compatible": "true" if meta.hardware_compatible else "false",
                "dacovid_onnx_sha256": meta.onnx_sha256,
            }
        )
        metadata_doc = meta.to_dict()
    else:
        info = read_onnx_info(model_path)
        if info.max_batch is not None:
            raise UserInputError(
                f"{str(model_path)!r} has a fixed batch of {info.max_batch}; Triton's dynamic batching needs a dynamic "
                "batch dimension: export the ONNX with a dynamic batch"
            )
        hint = info.extra.get("suggested_max_batch")  # the export's --max-batch, if it was given
        default = hint if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 1 else DEFAULT_ONNX_MAX_BATCH
        batch = max_batch if max_batch is not None else default
        platform, filename = "onnxruntime_onnx", "model.onnx"
        input_type = output_type = "TYPE_FP32"
        preferred = [batch] if batch > 1 else []
        parameters = _common_parameters(info, sha256_file(model_path))
        extra_files = _onnx_external_files(model_path)
        metadata_doc = info.to_dict()

    if any("\n" in c or "\r" in c for c in info.class_names):
        raise UserInputError(f"class names {list(info.class_names)!r} contain line breaks; labels.txt holds one name per line")
    config = triton_config_text(
        name=name,
        platform=platform,
        max_batch=batch,
        input_name=info.input_name,
        output_name=info.output_name,
        image_size=info.image_size,
        num_classes=info.num_classes,
        input_type=input_type,
        output_type=output_type,
        preferred_batch_sizes=preferred,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        kind=kind,
        label_filename="labels.txt",
        default_model_filename=filename,
        parameters=parameters,
    )

    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    _copy_atomic(model_path, version_dir / filename)
    for location in extra_files:
        # the ONNX names its weight files by location; they must sit beside it under that name
        _copy_atomic(model_path.parent / location, version_dir / location)
    if overwrite:
        keep = {filename, *(Path(loc).parts[0] for loc in extra_files)}
        inputs = [p for p in companion_files(model_path) if p.exists()]
        for stale in version_dir.iterdir():
            # left over from the model this one replaces (e.g. model.onnx and its data after a switch to a plan),
            # but never the model this repository is made from, should it sit there
            if stale.is_file() and stale.name not in keep and not stale.name.startswith("."):
                if not any(same_file(stale, source) for source in inputs):
                    stale.unlink()
    atomic_write_text(model_dir / "labels.txt", "".join(f"{c}\n" for c in info.class_names))
    atomic_write_json(model_dir / "dacovid_metadata.json", metadata_doc)
    atomic_write_text(model_dir / "config.pbtxt", config)
    return model_dir

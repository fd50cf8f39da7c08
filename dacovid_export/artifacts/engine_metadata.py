"""The JSON sidecar of a TensorRT engine (``<engine>.json``): its fields, validated, and its reader.

A serialized engine says nothing readable about itself, and it only loads in
the TensorRT version and on the GPU architecture it was built for (the load-time
check is :func:`dacovid_export.trt.compat.check_engine_compatibility`). The sidecar,
written next to the engine by :func:`dacovid_export.engine.sidecar.write_engine_and_sidecar`,
records what a service and an auditor need: TensorRT version, GPU name and
compute capability, precision, profile shapes, checksums of the ONNX model and
of the checkpoint it came from, class names, preprocessing and package
versions. Reading it needs neither TensorRT nor a GPU.

Format version 2 adds the runtime (``"tensorrt"`` or ``"tensorrt-rtx"``), the
target compute capabilities of a TensorRT-RTX engine (built without a GPU, so
``gpu`` may be null) and ``layer_precisions``: the type TensorRT's own parser
gave every ONNX node, with counts. Version 1 sidecars (TensorRT only) still read.

Example (``model.fp16.engine.json``)::

    {"format": "dacovid-engine", "format_version": 2, "runtime": "tensorrt", "engine_file": "model.fp16.engine",
     "tensorrt_version": "10.8.0.43", "gpu": {"name": "NVIDIA GeForce RTX 2060", "compute_capability": "7.5"},
     "hardware_compatible": false, "precision": "fp16",
     "profile": {"input": "input", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [8, 3, 224, 224]}, ...}
"""

from __future__ import annotations

import dataclasses
import re
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from dacovid_export.artifacts.info import ArtifactInfo
from dacovid_export.core.commands import rebuild_command
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import refuse_scratch
from dacovid_export.core.limits import MAX_CLASSES, check_batch_size, check_count, check_image_size
from dacovid_export.core.versions import parse_version
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.trt.targets import RTX_TARGETS, RUNTIMES

__all__ = [
    "ENGINE_METADATA_FORMAT",
    "ENGINE_METADATA_VERSION",
    "EngineMetadata",
    "sidecar_path",
    "read_engine_metadata",
    "read_engine_info",
    "engine_artifact_info",
]

ENGINE_METADATA_FORMAT = "dacovid-engine"
ENGINE_METADATA_VERSION = 2
_IO_DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class EngineMetadata:
    """Everything the sidecar records; ``path`` is where the engine was found (not stored)."""

    engine_file: str
    engine_bytes: int
    engine_sha256: str
    tensorrt_version: str  # the version of the library that built it (TensorRT or TensorRT-RTX)
    gpu_name: str  # the build GPU; "" for a TensorRT-RTX engine built without one
    compute_capability: tuple[int, int] | None  # the build GPU's; None without one
    hardware_compatible: bool
    precision: str
    input_name: str
    output_name: str
    profile_min: tuple[int, int, int, int]  # N x C x H x W
    profile_opt: tuple[int, int, int, int]
    profile_max: tuple[int, int, int, int]
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    onnx_file: str  # the ONNX model the engine was parsed from, as given to the build
    onnx_sha256: str  # sha256 of that .onnx file (what `sha256sum` prints)
    source_sha256: str  # the checkpoint's sha256, carried from the ONNX metadata
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    onnx_external_data: Mapping[str, str] = dataclasses.field(default_factory=dict)  # data file -> sha256
    build: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # workspace, opt level, timings
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    created: str = ""
    runtime: str = "tensorrt"
    # TensorRT-RTX: the compute capabilities the engine was compiled for ("8.6", ...); TensorRT: the build GPU's
    compute_capabilities: tuple[str, ...] = ()
    layer_precisions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # content fingerprints of the images the ONNX model's accuracy guard chose it on: check sets them aside
    guard_fingerprints: tuple[str, ...] = ()
    path: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        # a precision's name; which precisions have engines is the precision stage's to say (calibration.precisions,
        # checked where engines are built and opened), not this reader's
        if not isinstance(self.precision, str) or not re.fullmatch(r"[a-z][a-z0-9_]{1,15}", self.precision):
            raise UserInputError(
                f"engine metadata precision={self.precision!r}: expected a precision name such as 'fp16' or 'int8'"
            )
        for name in ("input_dtype", "output_dtype"):
            if getattr(self, name) not in _IO_DTYPES:
                raise UserInputError(f"engine metadata {name}={getattr(self, name)!r}: expected float32 or float16")
        for name in ("profile_min", "profile_opt", "profile_max"):
            shape = tuple(int(v) for v in getattr(self, name))
            if len(shape) != 4 or any(v < 1 for v in shape):
                raise UserInputError(f"engine metadata {name}={list(shape)}: expected 4 positive dimensions N x C x H x W")
            object.__setattr__(self, name, shape)
        # the CLI's bounds, at the one place a sidecar is read: an edited one must not size buffers or batches
        check_batch_size(self.profile_max[0], "engine metadata profile max batch")
        check_image_size(self.profile_max[2], "engine metadata profile image size")
        if self.profile_max[2] != self.profile_max[3]:
            raise UserInputError(f"engine metadata profile_max={list(self.profile_max)}: expected square images (H = W)")
        if not (self.profile_min[0] <= self.profile_opt[0] <= self.profile_max[0]):
            raise UserInputError(
                f"engine metadata batch profile {self.profile_min[0]}/{self.profile_opt[0]}/{self.profile_max[0]} "
                "is not ordered min <= opt <= max"
            )
        if self.runtime not in RUNTIMES:
            raise UserInputError(f"engine metadata runtime={self.runtime!r}: expected one of {', '.join(RUNTIMES)}")
        if self.compute_capability is not None:
            cc = tuple(int(v) for v in self.compute_capability)
            if len(cc) != 2:
                raise UserInputError(f"engine metadata compute_capability={self.compute_capability!r}: expected MAJOR.MINOR")
            object.__setattr__(self, "compute_capability", cc)
        elif self.runtime == "tensorrt":
            raise UserInputError("engine metadata of a TensorRT engine must name the build GPU's compute capability")
        targets = tuple(str(t) for t in self.compute_capabilities)
        if not targets and self.compute_capability is not None:
            targets = (f"{self.compute_capability[0]}.{self.compute_capability[1]}",)
        if self.runtime == "tensorrt-rtx":
            unknown = [t for t in targets if t not in RTX_TARGETS]
            if not targets or unknown:
                raise UserInputError(
                    f"engine metadata compute_capabilities={list(targets)}: expected TensorRT-RTX targets from "
                    f"{', '.join(RTX_TARGETS)}"
                )
        object.__setattr__(self, "compute_capabilities", targets)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        check_count(len(self.class_names), "engine metadata number of class_names", MAX_CLASSES, minimum=2)
        parse_version(self.tensorrt_version)  # raises for a malformed version

    @property
    def min_batch(self) -> int:
        return self.profile_min[0]

    @property
    def opt_batch(self) -> int:
        return self.profile_opt[0]

    @property
    def max_batch(self) -> int:
        return self.profile_max[0]

    @property
    def image_size(self) -> int:
        return self.profile_max[3]

    @property
    def compute_capability_str(self) -> str:
        """The build GPU's compute capability, ``""`` when it was built without a GPU."""
        if self.compute_capability is None:
            return ""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"

    @property
    def runtime_label(self) -> str:
        return f"{'TensorRT-RTX' if self.runtime == 'tensorrt-rtx' else 'TensorRT'} {self.tensorrt_version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENGINE_METADATA_FORMAT,
            "format_version": ENGINE_METADATA_VERSION,
            "engine_file": self.engine_file,
            "engine_bytes": self.engine_bytes,
            "engine_sha256": self.engine_sha256,
            "runtime": self.runtime,
            "tensorrt_version": self.tensorrt_version,
            "gpu": (
                {"name": self.gpu_name, "compute_capability": self.compute_capability_str}
                if self.compute_capability is not None
                else None
            ),
            "compute_capabilities": list(self.compute_capabilities),
            "hardware_compatible": self.hardware_compatible,
            "hardware_compatibility_level": "ampere+" if self.hardware_compatible else "none",
            "precision": self.precision,
            "io": {
                "input": {"name": self.input_name, "dtype": self.input_dtype},
                "output": {"name": self.output_name, "dtype": self.output_dtype, "classes": len(self.class_names)},
            },
            "profile": {
                "input": self.input_name,
                "min": list(self.profile_min),
                "opt": list(self.profile_opt),
                "max": list(self.profile_max),
            },
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_dict(),
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "onnx_external_data": dict(self.onnx_external_data),
            "source_sha256": self.source_sha256,
            "build": dict(self.build),
            "layer_precisions": dict(self.layer_precisions),
            "guard_fingerprints": list(self.guard_fingerprints),
            "versions": dict(self.versions),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "") -> "EngineMetadata":
        where = f"engine metadata {path!r}" if path else "engine metadata"
        if not isinstance(data, Mapping) or data.get("format") != ENGINE_METADATA_FORMAT:
            raise UserInputError(f"{where} is not a dacovid-export engine sidecar (no '{ENGINE_METADATA_FORMAT}' format tag)")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1 or version > ENGINE_METADATA_VERSION:
            raise UserInputError(
                f"{where} has format version {version!r}; this dacovid-export reads version {ENGINE_METADATA_VERSION}: "
                "upgrade dacovid-export or rebuild the engine"
            )
        try:
            gpu = data["gpu"]
            profile = data["profile"]
            io = data["io"]
            return cls(
                engine_file=str(data["engine_file"]),
                engine_bytes=int(data["engine_bytes"]),
                engine_sha256=str(data["engine_sha256"]),
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(gpu["name"]) if gpu is not None else "",
                compute_capability=_parse_cc(gpu["compute_capability"]) if gpu is not None else None,
                runtime=str(data.get("runtime", "tensorrt")),
                compute_capabilities=tuple(str(c) for c in data.get("compute_capabilities", ())),
                layer_precisions=dict(data.get("layer_precisions", {})),
                guard_fingerprints=tuple(str(f) for f in data.get("guard_fingerprints", ())),
                hardware_compatible=_bool(data["hardware_compatible"], "hardware_compatible"),
                precision=str(data["precision"]),
                input_name=str(io["input"]["name"]),
                output_name=str(io["output"]["name"]),
                input_dtype=str(io["input"].get("dtype", "float32")),
                output_dtype=str(io["output"].get("dtype", "float32")),
                profile_min=_shape(profile["min"]),
                profile_opt=_shape(profile["opt"]),
                profile_max=_shape(profile["max"]),
                class_names=tuple(data["class_names"]),
                preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                onnx_file=str(data["onnx_file"]),
                onnx_sha256=str(data["onnx_sha256"]),
                onnx_external_data={str(k): str(v) for k, v in dict(data.get("onnx_external_data", {})).items()},
                source_sha256=str(data["source_sha256"]),
                build=dict(data.get("build", {})),
                versions={str(k): str(v) for k, v in dict(data.get("versions", {})).items()},
                created=str(data.get("created", "")),
                path=path,
            )
        except UserInputError as exc:
            raise UserInputError(f"{where}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UserInputError(f"{where} is incomplete or malformed ({detail}); rebuild the engine") from exc


def _shape(value: Any) -> tuple[int, int, int, int]:
    # as read from JSON; __post_init__ refuses anything but 4 positive integers, with the value quoted
    return cast("tuple[int, int, int, int]", tuple(value))


def _parse_cc(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        return (int(major), int(minor))
    if isinstance(value, Sequence) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    raise ValueError(f"compute_capability={value!r}: expected 'MAJOR.MINOR'")


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: expected true or false")
    return value


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_engine_metadata(engine_path: str | os.PathLike[str]) -> EngineMetadata:
    """The sidecar of ``engine_path``, validated; :class:`UserInputError` if it is missing or damaged.

    Also checks that the engine file exists and has the size the sidecar
    recorded, so a sidecar left behind by an older build is not trusted. Another
    run's scratch is refused (:func:`~dacovid_export.core.fileio.refuse_scratch`).
    """
    refuse_scratch(engine_path)
    engine_path = Path(engine_path)
    side = sidecar_path(engine_path)
    if not engine_path.is_file():
        raise UserInputError(f"engine {str(engine_path)!r} does not exist or is not a file")
    if not side.is_file():
        raise UserInputError(
            f"engine {str(engine_path)!r} has no metadata sidecar {side.name!r}: dacovid-export needs it to know the "
            "classes, preprocessing and the TensorRT/GPU it was built for; rebuild with 'dacovid-export trt MODEL.onnx "
            f"--fp16|--int8|--fp32 -o {engine_path}'"
        )
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"engine metadata {str(side)!r} is unreadable or not valid JSON ({exc})") from exc
    metadata = EngineMetadata.from_dict(data, path=str(engine_path))
    size = engine_path.stat().st_size
    if size != metadata.engine_bytes:
        raise UserInputError(
            f"engine {str(engine_path)!r} is {size} bytes but its sidecar {side.name!r} describes a {metadata.engine_bytes}-byte "
            "engine: the two come from different builds; rebuild with: " + rebuild_command(metadata, engine_path)
        )
    return metadata


def read_engine_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    """:class:`ArtifactInfo` of an engine from its sidecar (no TensorRT, no GPU needed)."""
    return engine_artifact_info(read_engine_metadata(path), path)


def engine_artifact_info(meta: EngineMetadata, path: str | os.PathLike[str]) -> ArtifactInfo:
    """:class:`ArtifactInfo` (kind ``"engine"``, batch range from the profile) of already read metadata."""
    return ArtifactInfo(
        path=str(path),
        kind="engine",
        class_names=meta.class_names,
        preprocessing=meta.preprocessing,
        precision=meta.precision,
        source_sha256=meta.source_sha256,
        versions=dict(meta.versions),
        input_name=meta.input_name,
        output_name=meta.output_name,
        min_batch=meta.min_batch,
        max_batch=meta.max_batch,
        extra={
            "runtime": meta.runtime,
            "tensorrt_version": meta.tensorrt_version,
            "compute_capabilities": list(meta.compute_capabilities),
            "gpu_name": meta.gpu_name,
            "compute_capability": meta.compute_capability_str,
            "hardware_compatible": meta.hardware_compatible,
            "opt_batch": meta.opt_batch,
            "onnx_file": meta.onnx_file,
            "onnx_sha256": meta.onnx_sha256,
            "engine_sha256": meta.engine_sha256,
            "input_dtype": meta.input_dtype,
            "output_dtype": meta.output_dtype,
            "build": dict(meta.build),
        },
    )


"""The engine's JSON sidecar: assembled from the build, written with the engine so that neither stays alone."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from dacovid_export.artifacts.engine_metadata import (
    EngineMetadata,
    read_engine_metadata,
    sidecar_path,
)
from dacovid_export.artifacts.onnx_graph import external_data_locations
from dacovid_export.calibration.precisions import engine_precisions
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import atomic_path, sha256_file
from dacovid_export.core.progress import StepTimer
from dacovid_export.core.versions import package_versions
from dacovid_export.engine.config import EngineBuildConfig, ProfileShapes
from dacovid_export.engine.trtexec import format_command
from dacovid_export.trt.library import runtime_of

if TYPE_CHECKING:
    from types import ModuleType

    from dacovid_export.artifacts.info import ArtifactInfo
    from dacovid_export.trt.library import GpuInfo
    from dacovid_export.trt.network import LayerPrecisions

__all__ = ["engine_sidecar", "read_engine_sidecar", "write_engine_and_sidecar"]


def read_engine_sidecar(path: "str | os.PathLike[str]") -> EngineMetadata:
    """The sidecar of the engine at ``path``, refused unless its precision is one ``trt`` builds engines of.

    artifacts/ reads the sidecar's shape; which precisions have engines is the registry's to say, so the
    check sits here, above it, where every engine is opened.
    """
    meta = read_engine_metadata(path)
    if meta.precision not in engine_precisions():
        raise UserInputError(
            f"{sidecar_path(path)}: engine metadata precision={meta.precision!r} is not a precision dacovid-export "
            f"builds engines of ({', '.join(engine_precisions())}): the sidecar was edited or written by another "
            "tool; rebuild the engine with `dacovid-export trt`"
        )
    return meta


def _onnx_digests(source: Path) -> tuple[str, dict[str, str]]:
    """sha256 of the .onnx file and of each external data file it references."""
    external = {}
    for location in external_data_locations(source):
        data_file = source.parent / location
        if data_file.is_file():
            external[location] = sha256_file(data_file)
    return sha256_file(source), external


def engine_sidecar(
    trt: "ModuleType",
    gpu: "GpuInfo | None",
    info: "ArtifactInfo",
    source: Path,
    output: Path,
    config: EngineBuildConfig,
    shapes: ProfileShapes,
    io: dict[str, str],
    blob: bytes,
    phases: StepTimer,
    trtexec: list[str],
    targets: tuple[str, ...],
    precisions: "LayerPrecisions",
    verified: str,
) -> "EngineMetadata":
    """The sidecar of the engine ``blob`` just built from ``source``: what it is, how it was built, where it runs."""
    from dacovid_export.calibration.step_metadata import guard_fingerprints

    onnx_sha, external = _onnx_digests(source)
    build = config.to_dict()
    build["seconds"] = {k: round(v, 3) for k, v in phases.seconds.items()}
    build["trtexec"] = format_command(trtexec) if trtexec else None
    build["verified"] = verified
    if gpu is not None:
        build["gpu_memory_gib"] = round(gpu.total_memory_bytes / 2**30, 1)
    runtime = runtime_of(trt)
    if runtime == "tensorrt-rtx":
        build["default_targets"] = not config.target_cc
    return EngineMetadata(
        engine_file=output.name,
        engine_bytes=len(blob),
        engine_sha256=hashlib.sha256(blob).hexdigest(),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu.name if gpu is not None else "",
        compute_capability=gpu.compute_capability if gpu is not None else None,
        hardware_compatible=config.hardware_compatible,
        precision=config.precision,
        input_name=info.input_name,
        output_name=info.output_name,
        input_dtype=io["input"],
        output_dtype=io["output"],
        profile_min=shapes[0],
        profile_opt=shapes[1],
        profile_max=shapes[2],
        class_names=info.class_names,
        preprocessing=info.preprocessing,
        onnx_file=str(source),
        onnx_sha256=onnx_sha,
        onnx_external_data=external,
        source_sha256=info.source_sha256,
        build=build,
        versions=package_versions(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        runtime=runtime,
        compute_capabilities=targets if runtime == "tensorrt-rtx" else (),
        layer_precisions=precisions.to_dict(),
        # what the ONNX model's accuracy guard judged it on: check sets those images aside
        guard_fingerprints=guard_fingerprints(source),
    )


def write_engine_and_sidecar(output: Path, blob: bytes, metadata: "EngineMetadata") -> Path:
    """Write both through temporary files and renames (engine, then sidecar); on failure neither new file stays."""
    import json

    side = sidecar_path(output)
    engine_in_place = False
    try:
        with atomic_path(side) as side_tmp:
            side_tmp.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
            with atomic_path(output) as engine_tmp:
                with open(engine_tmp, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())
            engine_in_place = True
    except BaseException:
        if engine_in_place:
            output.unlink(missing_ok=True)
        raise
    return side


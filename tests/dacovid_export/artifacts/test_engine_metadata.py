"""Engine sidecar metadata and the load-time compatibility check, on real sidecar files.

No engine can be built here, so each test writes a clearly named placeholder
file (not an engine) into its tmp dir and a real sidecar beside it with
write_engine_and_sidecar, the writer the build uses; nothing here deserializes the placeholder.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from dacovid_export.artifacts.engine_metadata import (
    EngineMetadata,
    read_engine_info,
    read_engine_metadata,
    sidecar_path,
)
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.core.commands import rebuild_command
from dacovid_export.core.errors import IncompatibleArtifactError, UserInputError
from dacovid_export.engine.sidecar import write_engine_and_sidecar
from dacovid_export.trt.compat import check_engine_compatibility
from tests.helpers.engines import placeholder_metadata

PLACEHOLDER = b"placeholder bytes for metadata tests - NOT a TensorRT engine\n"


def _metadata(engine: Path, **changes) -> EngineMetadata:
    """The shared placeholder sidecar, with the build facts these tests read back."""
    base = dict(
        onnx_file="models/tiny.fp16.onnx",
        build={"workspace_gib": 4.0, "opt_level": 3, "seconds": {"parse": 0.1}},
        versions={"dacovid-export": "0.1.0", "tensorrt": "10.8.0.43"},
        created="2026-01-01T00:00:00+00:00",
    )
    return placeholder_metadata(engine, PLACEHOLDER, **{**base, **changes})


@pytest.fixture()
def engine(tmp_path: Path) -> Path:
    path = tmp_path / "placeholder_not_an_engine.fp16.engine"
    write_engine_and_sidecar(path, PLACEHOLDER, _metadata(path))
    return path


def test_sidecar_is_engine_name_plus_json(engine: Path) -> None:
    side = sidecar_path(engine)
    assert side.name == "placeholder_not_an_engine.fp16.engine.json"
    data = json.loads(side.read_text())
    assert data["format"] == "dacovid-engine"
    assert data["tensorrt_version"] == "10.8.0.43"
    assert data["gpu"] == {"name": "NVIDIA GeForce RTX 2060", "compute_capability": "7.5"}
    assert data["profile"]["min"] == [1, 3, 64, 64] and data["profile"]["max"] == [8, 3, 64, 64]
    assert data["hardware_compatible"] is False
    assert data["onnx_sha256"] == "ab" * 32 and data["source_sha256"] == "cd" * 32
    assert data["class_names"] == ["Normal", "Pneumonia", "COVID-19"]
    assert data["preprocessing"]["image_size"] == 64


def test_roundtrip(engine: Path) -> None:
    meta = read_engine_metadata(engine)
    assert meta == _metadata(engine)
    assert meta.path == str(engine)
    assert (meta.min_batch, meta.opt_batch, meta.max_batch, meta.image_size) == (1, 4, 8, 64)


def test_read_engine_info_and_artifact_dispatch(engine: Path) -> None:
    for info in (read_engine_info(engine), read_artifact_info(engine)):
        assert info.kind == "engine"
        assert (info.min_batch, info.max_batch) == (1, 8)
        assert info.precision == "fp16"
        assert info.class_names == ("Normal", "Pneumonia", "COVID-19")
        assert info.image_size == 64
        assert info.source_sha256 == "cd" * 32
        assert info.extra["tensorrt_version"] == "10.8.0.43"
        assert info.extra["compute_capability"] == "7.5"


def test_missing_sidecar_says_how_to_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "placeholder_not_an_engine.engine"
    path.write_bytes(PLACEHOLDER)
    with pytest.raises(UserInputError, match="no metadata sidecar.*dacovid-export trt"):
        read_engine_info(path)


def test_sidecar_of_another_build_is_rejected(engine: Path) -> None:
    engine.write_bytes(PLACEHOLDER + b"more")
    with pytest.raises(UserInputError, match="different builds"):
        read_engine_metadata(engine)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="something-else"), "not a dacovid-export engine sidecar"),
        (lambda d: d.update(format_version=99), "format version 99"),
        (lambda d: d.pop("tensorrt_version"), "missing entry 'tensorrt_version'"),
        (lambda d: d.update(precision="BF 16"), "precision='BF 16'"),
        (lambda d: d["profile"].update(min=[9, 3, 64, 64]), "not ordered"),
    ],
)
def test_damaged_sidecar(engine: Path, edit, message: str) -> None:
    side = sidecar_path(engine)
    data = json.loads(side.read_text())
    edit(data)
    side.write_text(json.dumps(data))
    with pytest.raises(UserInputError, match=message):
        read_engine_metadata(engine)


def test_an_engine_of_a_precision_trt_does_not_build_is_refused_where_engines_are_opened(engine: Path) -> None:
    from dacovid_export.engine.sidecar import read_engine_sidecar

    side = sidecar_path(engine)
    data = json.loads(side.read_text())
    data["precision"] = "bf16"  # a precision name, but not one with engines
    side.write_text(json.dumps(data))
    assert read_engine_metadata(engine).precision == "bf16"  # artifacts/ reads the shape only
    with pytest.raises(UserInputError, match="precision='bf16' is not a precision dacovid-export builds engines of"):
        read_engine_sidecar(engine)


def test_same_version_and_gpu_is_compatible(engine: Path) -> None:
    meta = read_engine_metadata(engine)
    check_engine_compatibility(meta, trt_version="10.8.0.43", compute_capability=(7, 5))
    # a version string with fewer components compares on the components both have
    check_engine_compatibility(meta, trt_version="10.8.0", compute_capability=(7, 5))


def test_other_tensorrt_version(engine: Path) -> None:
    meta = read_engine_metadata(engine)
    with pytest.raises(IncompatibleArtifactError) as err:
        check_engine_compatibility(meta, trt_version="11.1.0.106", compute_capability=(7, 5))
    text = str(err.value)
    assert "TensorRT 10.8.0.43" in text and "TensorRT 11.1.0.106 is installed" in text
    assert "compute capability" not in text  # only the thing that differs is named
    command = text.split("rebuild it here with: ", 1)[1]
    assert shlex.split(command) == [
        "dacovid-export", "trt", "models/tiny.fp16.onnx", "--fp16", "-o", str(engine), "--runtime", "tensorrt",
        "--min-batch", "1", "--opt-batch", "4", "--max-batch", "8", "--workspace", "4", "--opt-level", "3",
    ]
    with pytest.raises(IncompatibleArtifactError, match="10.9.0.34 is installed"):
        check_engine_compatibility(meta, trt_version="10.9.0.34", compute_capability=(7, 5))


def test_other_compute_capability(engine: Path) -> None:
    meta = read_engine_metadata(engine)
    with pytest.raises(IncompatibleArtifactError) as err:
        check_engine_compatibility(meta, trt_version="10.8.0.43", compute_capability=(8, 6), gpu_name="NVIDIA A10")
    text = str(err.value)
    assert "compute capability 7.5 (NVIDIA GeForce RTX 2060)" in text
    assert "this GPU is 8.6 (NVIDIA A10)" in text
    assert "--hardware-compatible" in text and "rebuild it here with: dacovid-export trt" in text
    assert "TensorRT 10.8.0.43 but" not in text


def test_hardware_compatible_engine(tmp_path: Path) -> None:
    path = tmp_path / "placeholder_not_an_engine.hwc.engine"
    write_engine_and_sidecar(
        path, PLACEHOLDER, _metadata(path, compute_capability=(8, 6), gpu_name="NVIDIA A10", hardware_compatible=True)
    )
    meta = read_engine_metadata(path)
    assert json.loads(sidecar_path(path).read_text())["hardware_compatibility_level"] == "ampere+"
    for cc in ((8, 0), (8, 9), (9, 0), (12, 0)):  # any Ampere or newer GPU
        check_engine_compatibility(meta, trt_version="10.8.0.43", compute_capability=cc)
    with pytest.raises(IncompatibleArtifactError) as err:
        check_engine_compatibility(meta, trt_version="10.8.0.43", compute_capability=(7, 5), gpu_name="Tesla T4")
    text = str(err.value)
    assert "compute capability >= 8.0" in text and "7.5 (Tesla T4)" in text
    assert "--hardware-compatible" not in text.split("with: ", 1)[1]  # the rebuild for this GPU drops it
    # the TensorRT version must still match exactly
    with pytest.raises(IncompatibleArtifactError, match="TensorRT 10.8.0.43"):
        check_engine_compatibility(meta, trt_version="10.16.0.1", compute_capability=(8, 6))


def test_rebuild_command_keeps_options(engine: Path) -> None:
    meta = dataclasses.replace(read_engine_metadata(engine), hardware_compatible=True, precision="int8")
    args = shlex.split(rebuild_command(meta, "out dir/x.engine"))
    assert args[:6] == ["dacovid-export", "trt", "models/tiny.fp16.onnx", "--int8", "-o", "out dir/x.engine"]
    assert args[-1] == "--hardware-compatible"


def test_metadata_validation() -> None:
    with pytest.raises(UserInputError, match="MAJOR.MINOR"):
        _metadata(Path("x.engine"), tensorrt_version="ten")
    with pytest.raises(UserInputError, match="4 positive dimensions"):
        _metadata(Path("x.engine"), profile_max=(8, 3, 64))
    with pytest.raises(UserInputError, match="float32 or float16"):
        _metadata(Path("x.engine"), input_dtype="int8")

"""A placeholder "engine": a file with a valid JSON sidecar whose bytes are not a TensorRT plan (plain functions).

Triton config writing and the sidecar checks read only the sidecar and the file's
checksum, so they can be tested without TensorRT or a GPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dacovid_export.artifacts.engine_metadata import EngineMetadata

PLACEHOLDER_PLAN = b"placeholder plan for tests - NOT a TensorRT engine\n"


def placeholder_metadata(engine: Path, data: bytes = PLACEHOLDER_PLAN, **changes: object) -> "EngineMetadata":
    """The sidecar of a 64x64 FP16 engine built on an RTX 2060 whose file holds ``data``; ``changes`` replace fields."""
    from dacovid_export.artifacts.engine_metadata import EngineMetadata
    from dacovid_export.data.preprocessing import Preprocessing

    values: dict[str, object] = dict(
        engine_file=engine.name,
        engine_bytes=len(data),
        engine_sha256=hashlib.sha256(data).hexdigest(),
        tensorrt_version="10.8.0.43",
        gpu_name="NVIDIA GeForce RTX 2060",
        compute_capability=(7, 5),
        hardware_compatible=False,
        precision="fp16",
        input_name="input",
        output_name="logits",
        profile_min=(1, 3, 64, 64),
        profile_opt=(4, 3, 64, 64),
        profile_max=(8, 3, 64, 64),
        class_names=("Normal", "Pneumonia", "COVID-19"),
        preprocessing=Preprocessing(image_size=64),
        onnx_file="tiny.fp16.onnx",
        onnx_sha256="ab" * 32,
        source_sha256="cd" * 32,
    )
    values.update(changes)
    return EngineMetadata(**values)  # type: ignore[arg-type]


def write_placeholder_engine(folder: Path, *, flip_byte: bool = False, **changes: object) -> Path:
    """``folder/placeholder_not_an_engine.fp16.engine`` and its sidecar (a 64x64 FP16 engine of a 2060).

    ``changes`` replace sidecar fields; ``flip_byte`` changes one byte of the file
    after the sidecar recorded its sha256 (a damaged or swapped engine).
    """
    from dacovid_export.engine.sidecar import write_engine_and_sidecar

    data = PLACEHOLDER_PLAN
    engine = folder / "placeholder_not_an_engine.fp16.engine"
    write_engine_and_sidecar(engine, data, placeholder_metadata(engine, data, **changes))
    if flip_byte:
        engine.write_bytes(data[:10] + bytes([data[10] ^ 1]) + data[11:])
    return engine

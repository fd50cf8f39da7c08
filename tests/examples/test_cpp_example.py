"""The C++ example's preprocessing and JSON reader, compiled here and compared with the Python package.

examples/cpp/preprocess_dump.cpp needs no TensorRT or CUDA: it reads a real
engine sidecar (written by write_engine_and_sidecar, as the build writes it) with the example's own JSON
reader and preprocesses an image with the example's code. Its output must equal
dacovid_export.data.preprocessing.preprocess bit for bit. Skipped without a C++17 compiler.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.artifacts.engine_metadata import (
    EngineMetadata,
    sidecar_path,
)
from dacovid_export.data.preprocessing import Preprocessing, preprocess
from dacovid_export.engine.sidecar import write_engine_and_sidecar
from tests.helpers.images import write_gray_png

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cpp"


@pytest.fixture(scope="module")
def dump_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++/clang++) to build examples/cpp/preprocess_dump.cpp")
    exe = tmp_path_factory.mktemp("cpp") / "preprocess_dump"
    subprocess.run(
        [compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(EXAMPLE),
         str(EXAMPLE / "preprocess_dump.cpp"), "-o", str(exe)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return exe


def _sidecar(folder: Path, spec: Preprocessing) -> Path:
    engine = folder / "placeholder_not_an_engine.engine"
    blob = b"placeholder - NOT a TensorRT engine"
    s = spec.image_size
    write_engine_and_sidecar(
        engine,
        blob,
        EngineMetadata(
            engine_file=engine.name, engine_bytes=len(blob),
            engine_sha256=hashlib.sha256(blob).hexdigest(), tensorrt_version="11.1.0.106",
            gpu_name="NVIDIA \"quoted\" GPU", compute_capability=(8, 6), hardware_compatible=False, precision="int8",
            input_name="input", output_name="logits", profile_min=(1, 3, s, s), profile_opt=(2, 3, s, s),
            profile_max=(4, 3, s, s), class_names=("Normal", "Pneumonia", "COVID-19 (Κορωνοϊός)"), preprocessing=spec,
            onnx_file="m.int8.onnx", onnx_sha256="0" * 64, source_sha256="1" * 64,
        ),
    )
    return sidecar_path(engine)


def _cpp(tool: Path, meta: Path, image: Path, out: Path, size: int) -> np.ndarray:
    subprocess.run([str(tool), str(meta), str(image), str(out)], check=True, capture_output=True, text=True, timeout=60)
    return np.fromfile(out, dtype=np.float32).reshape(3, size, size)


CASES = [
    # name, (height, width), image kind, Preprocessing options
    ("gray_wide", (200, 300), "L", dict(image_size=64, resize_size=80)),
    ("rgb_tall_bicubic", (311, 257), "RGB", dict(image_size=64, resize_size=75, interpolation="bicubic")),
    ("squash", (90, 140), "L", dict(image_size=64, resize_size=72, resize_policy="squash")),
    ("gray16", (120, 100), "I;16", dict(image_size=64)),
    ("upscale", (40, 50), "L", dict(image_size=64)),
    ("no_resize", (73, 73), "L", dict(image_size=64, resize_size=73)),
]


@pytest.mark.parametrize("name, shape, kind, options", CASES, ids=[c[0] for c in CASES])
def test_cpp_preprocessing_equals_python(dump_tool: Path, tmp_path: Path, name, shape, kind, options) -> None:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    h, w = shape
    if kind == "RGB":
        image, path = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB"), tmp_path / f"{name}.ppm"
    elif kind == "I;16":
        image, path = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)), tmp_path / f"{name}.pgm"
    else:
        image, path = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"), tmp_path / f"{name}.pgm"
    image.save(path)
    spec = Preprocessing(**options)
    got = _cpp(dump_tool, _sidecar(tmp_path, spec), path, tmp_path / "out.f32", spec.image_size)
    np.testing.assert_array_equal(got, preprocess(path, spec))


def test_cpp_reads_plain_and_odd_maxval_pnm(dump_tool: Path, tmp_path: Path) -> None:
    """Plain P2/P3 and maxvals Pillow rescales (12-bit, 100, 1000) decode as Pillow decodes them."""
    rng = np.random.default_rng(7)
    spec = Preprocessing(image_size=64)
    meta = _sidecar(tmp_path, spec)
    files = {}
    arr = rng.integers(0, 4096, (70, 90), dtype=np.uint16)
    files["p5_12bit.pgm"] = b"P5\n# a comment\n90 70\n4095\n" + arr.astype(">u2").tobytes()
    arr = rng.integers(0, 101, (66, 70))
    files["p2_100.pgm"] = ("P2\n70 66\n100\n" + "\n".join(" ".join(map(str, r)) for r in arr) + "\n").encode()
    arr = rng.integers(0, 1001, (66, 70, 3))
    files["p3_1000.ppm"] = ("P3\n70 66\n1000\n" + "\n".join(" ".join(map(str, r.ravel())) for r in arr) + "\n").encode()
    arr = rng.integers(0, 65536, (80, 64, 3), dtype=np.uint16)
    files["p6_16bit.ppm"] = b"P6 64 80 65535\n" + arr.astype(">u2").tobytes()
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        got = _cpp(dump_tool, meta, path, tmp_path / "out.f32", 64)
        np.testing.assert_array_equal(got, preprocess(path, spec), err_msg=name)


def test_cpp_on_real_xray(dump_tool: Path, real_data_dir: Path, tmp_path: Path) -> None:
    from dacovid_export.data.image_folder import find_images

    source = find_images(real_data_dir)[0]
    path = tmp_path / "xray.pgm"
    Image.open(source).convert("L").save(path)
    spec = Preprocessing(image_size=224)
    np.testing.assert_array_equal(_cpp(dump_tool, _sidecar(tmp_path, spec), path, tmp_path / "o.f32", 224), preprocess(path, spec))


def test_cpp_errors_are_one_line(dump_tool: Path, tmp_path: Path) -> None:
    spec = Preprocessing(image_size=64)
    meta = _sidecar(tmp_path, spec)
    bad = tmp_path / "bad.pgm"
    bad.write_bytes(b"P5\n10 10\n255\nshort")
    proc = subprocess.run([str(dump_tool), str(meta), str(bad), str(tmp_path / "o.f32")], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip() == "error: PNM pixel data is truncated"
    broken = tmp_path / "broken.json"
    broken.write_text('{"preprocessing": {"image_size": 64,}}')
    proc = subprocess.run([str(dump_tool), str(broken), str(bad), str(tmp_path / "o.f32")], capture_output=True, text=True)
    assert proc.returncode == 1 and "JSON parse error at byte" in proc.stderr
    png = write_gray_png(tmp_path / "x.png", size=8)
    proc = subprocess.run([str(dump_tool), str(meta), str(png), str(tmp_path / "o.f32")], capture_output=True, text=True)
    assert proc.returncode == 1 and "PGM/PPM only" in proc.stderr

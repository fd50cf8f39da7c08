"""Bad input to dacovid_infer: each one ``error:`` line and exit code 2, never a crash; the other images go on.

The same inputs also run once under AddressSanitizer + UndefinedBehaviorSanitizer (a second build).
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import load_image
from tests.helpers.cpp import build_cpp
from tests.helpers.pngraw import png_header_only


def _good_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 70), dtype=np.uint8), "L").save(path)
    return path


def _bad_images(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment its error line must hold)."""
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 70), dtype=np.uint8), "L").save(good, "PNG")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (80, 70, 3), dtype=np.uint8), "RGB").save(jpeg, "JPEG")
    files = {
        "corrupt_png": (good.getvalue()[:33] + b"\x00garbage" * 40, "corrupt"),
        "truncated_png": (good.getvalue()[: len(good.getvalue()) // 2], "truncated"),
        "corrupt_jpeg": (jpeg.getvalue()[:2] + b"\xff\xd8\xff" + bytes(range(256)) * 4, "corrupt"),
        "truncated_jpeg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated"),
        "zero_size": (b"", "empty"),
        "text": (b"not an image at all\n", "not a PNG, JPEG or PGM/PPM"),
        "truncated_pgm": (b"P5\n10 10\n255\nshort", "truncated"),
        "dicom": (b"\x00" * 128 + b"DICM" + b"\x00" * 64, "convert"),
    }
    out = {}
    for name, (data, fragment) in files.items():
        path = folder / f"{name}.img"
        path.write_bytes(data)
        out[name] = (path, fragment)
    out["over_limit"] = (png_header_only(folder / "over_limit.png", 10_000, 9_000), "too large to decode safely")
    out["strip_1x3000000"] = (png_header_only(folder / "strip.png", 3_000_000, 1), "ratio of 3000000:1")
    out["missing"] = (folder / "missing.png", "does not exist")
    out["directory"] = (folder, "not a file")
    return out


def _run(tool: Path, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def _one_error_line(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr and "Sanitizer" not in stderr and "runtime error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_every_bad_image_is_one_line_and_the_others_go_on(dacovid_infer: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    good = _good_png(tmp_path / "good.png")
    for name, (path, fragment) in _bad_images(tmp_path).items():
        done = _run(dacovid_infer, tiny_fp32_onnx, good, path)
        assert done.returncode == 2, (name, done.stderr)
        _one_error_line(done.stderr, fragment, str(path))
        assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith(f"{good}: "), (name, done.stdout)
        if name != "dicom":  # Python refuses the same files (a DICOM it decodes: docs/dicom.md)
            with pytest.raises(UserInputError):
                load_image(path)


def test_bad_images_in_json_mode_are_one_json_line_each(dacovid_infer: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    import json

    bad = _bad_images(tmp_path)
    done = _run(dacovid_infer, tiny_fp32_onnx, "--json", *(p for p, _ in bad.values()))
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 2 and done.stderr == "" and len(rows) == len(bad) and all("error" in r for r in rows)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_image(dacovid_infer: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    path = _good_png(tmp_path / "locked.png")
    path.chmod(0)
    done = _run(dacovid_infer, tiny_fp32_onnx, path)
    assert done.returncode == 2
    _one_error_line(done.stderr, "unreadable")


def _bad_models(folder: Path, onnx_model: Path) -> dict[str, tuple[Path, str]]:
    import onnx

    stripped = onnx.load(str(onnx_model))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(folder / "no_metadata.onnx"))
    partial = onnx.load(str(onnx_model))
    kept = [p for p in partial.metadata_props if p.key not in ("class_names", "precision")]
    del partial.metadata_props[:]
    partial.metadata_props.extend(kept)
    onnx.save(partial, str(folder / "partial.onnx"))
    (folder / "notes.onnx").write_text("these are notes, not a model\n")
    (folder / "garbage.onnx").write_bytes(b"\x08" + bytes(range(256)) * 8)
    (folder / "model.txt").write_text("hello")
    return {
        "no_metadata": (folder / "no_metadata.onnx", "is not a dacovid-export model"),
        "partial_metadata": (folder / "partial.onnx", "class_names, precision"),
        "text_as_onnx": (folder / "notes.onnx", "is not an ONNX model"),
        "garbage_onnx": (folder / "garbage.onnx", "could not read"),
        "not_a_model": (folder / "model.txt", "is not a model this runtime opens"),
        "missing": (folder / "missing.onnx", "does not exist"),
        "engine_without_tensorrt": (folder / "model.txt", ""),
    }


def test_bad_models_and_usage(dacovid_infer: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    good = _good_png(tmp_path / "good.png")
    for name, (model, fragment) in _bad_models(tmp_path, tiny_fp32_onnx).items():
        done = _run(dacovid_infer, model, good)
        assert done.returncode == 2 and done.stdout == "", (name, done.stderr)
        _one_error_line(done.stderr, fragment)
    for args, fragment in (((), "give MODEL"), ((tiny_fp32_onnx,), "at least one IMAGE"), ((tiny_fp32_onnx, good, "--batch", "0"), "--batch 0"),
                           ((tiny_fp32_onnx, good, "--threads", "x"), "--threads x"), ((tiny_fp32_onnx, good, "--frobnicate"), "unknown option")):  # fmt: skip
        done = _run(dacovid_infer, *args)
        assert done.returncode == 2, args
        _one_error_line(done.stderr, fragment)


@pytest.fixture(scope="module")
def sanitized_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cpp(tmp_path_factory.mktemp("cpp-asan"), sanitize=True)


def test_under_address_and_undefined_behaviour_sanitizers(sanitized_build: Path, tiny_int8_onnx: Path, tmp_path: Path) -> None:
    """Good and bad images, bad models, 4 threads: no sanitizer report, the same exit codes."""
    # OpenVINO's plugins and TBB keep allocations to process exit by design: leaks are not what this looks for.
    # TBB_ENABLE_SANITIZERS: oneTBB then loads tbbbind without RTLD_DEEPBIND, which ASan refuses
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1", "TBB_ENABLE_SANITIZERS": "1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}  # fmt: skip
    tool = sanitized_build / "dacovid_infer"
    good = [_good_png(tmp_path / f"good{i}.png") for i in range(6)]
    jpeg = tmp_path / "good.jpg"
    Image.open(good[0]).save(jpeg)
    done = _run(tool, tiny_int8_onnx, "--threads", "4", "--batch", "2", *good, jpeg, env=env)
    assert done.returncode == 0 and "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, done.stderr
    bad = _bad_images(tmp_path)
    done = _run(tool, tiny_int8_onnx, "--json", *good[:1], *(p for p, _ in bad.values()), env=env)
    assert done.returncode == 2 and done.stderr == "", done.stderr
    for name, (model, _) in _bad_models(tmp_path, tiny_int8_onnx).items():
        done = _run(tool, model, good[0], env=env)
        assert done.returncode == 2, (name, done.stderr)
        _one_error_line(done.stderr)
    dump = _run(sanitized_build / "preprocess_dump", tmp_path / "missing.json", good[0], tmp_path / "o.f32",
                env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})  # fmt: skip
    assert dump.returncode == 2 and "Sanitizer" not in dump.stderr, dump.stderr

"""The C++ runtime's decoding and preprocessing against dacovid_export.data.preprocessing.preprocess.

``preprocess_dump`` writes the network input the C++ side computes for one image. PNG (every colour type and
bit depth Pillow reads) and PGM/PPM must be bit-identical to Python; JPEG goes through two builds of
libjpeg-turbo (the system's and Pillow's own), so it is held to a stated bound: at most one 8-bit grey level
before normalisation (1 / 255 / min(std)) per value. On the real X-rays here it measured 0 (bit-identical).
"""

from __future__ import annotations

import json
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.data.preprocessing import Preprocessing, preprocess

# one 8-bit grey level, normalised by the smallest std
JPEG_BOUND = 1.0 / 255.0 / min(Preprocessing().std)


def _spec_file(folder: Path, spec: Preprocessing) -> Path:
    path = folder / f"spec-{spec.image_size}-{spec.resize_size}-{spec.resize_policy}-{spec.interpolation}.json"
    path.write_text(json.dumps({"preprocessing": spec.to_dict()}))
    return path


def _cpp(tool: Path, spec_file: Path, image: Path, size: int) -> np.ndarray:
    out = image.with_suffix(".f32")
    done = subprocess.run([str(tool), str(spec_file), str(image), str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.fromfile(out, dtype=np.float32).reshape(3, size, size)


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


PNM_CASES = [
    # name, (height, width), image kind, Preprocessing options
    ("gray_wide", (200, 300), "L", dict(image_size=64, resize_size=80)),
    ("rgb_tall_bicubic", (311, 257), "RGB", dict(image_size=64, resize_size=75, interpolation="bicubic")),
    ("squash", (90, 140), "L", dict(image_size=64, resize_size=72, resize_policy="squash")),
    ("gray16", (120, 100), "I;16", dict(image_size=64)),
    ("upscale", (40, 50), "L", dict(image_size=64)),
    ("no_resize", (73, 73), "L", dict(image_size=64, resize_size=73)),
]


@pytest.mark.parametrize("name, shape, kind, options", PNM_CASES, ids=[c[0] for c in PNM_CASES])
def test_pnm_is_bit_identical(preprocess_dump: Path, tmp_path: Path, name, shape, kind, options) -> None:
    rng = _rng(name)
    h, w = shape
    if kind == "RGB":
        image, path = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB"), tmp_path / f"{name}.ppm"
    elif kind == "I;16":
        image, path = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)), tmp_path / f"{name}.pgm"
    else:
        image, path = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"), tmp_path / f"{name}.pgm"
    image.save(path)
    spec = Preprocessing(**options)
    np.testing.assert_array_equal(_cpp(preprocess_dump, _spec_file(tmp_path, spec), path, spec.image_size), preprocess(path, spec))


def test_plain_and_odd_maxval_pnm(preprocess_dump: Path, tmp_path: Path) -> None:
    """Plain P2/P3 and maxvals Pillow rescales (12-bit, 100, 1000) decode as Pillow decodes them."""
    rng = np.random.default_rng(7)
    spec = Preprocessing(image_size=64)
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
        np.testing.assert_array_equal(_cpp(preprocess_dump, _spec_file(tmp_path, spec), path, 64), preprocess(path, spec), err_msg=name)


def _png_cases(rng: np.random.Generator, h: int, w: int) -> dict[str, tuple[Image.Image, dict]]:
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    palette = Image.fromarray(rgb, "RGB").quantize(colors=37)
    transparent = palette.copy()
    transparent.info["transparency"] = bytes(rng.integers(0, 256, 37, dtype=np.uint8))
    gray_trns = Image.fromarray(gray, "L")
    return {
        "gray8": (Image.fromarray(gray, "L"), {}),
        "gray16": (Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)), {}),
        "gray1": (Image.fromarray(gray > 127), {}),
        "gray_interlaced": (Image.fromarray(gray, "L"), {"interlace": 1}),
        "gray_with_trns": (gray_trns, {"transparency": 17}),
        "la": (Image.fromarray(np.dstack([gray, alpha]), "LA"), {}),
        "rgb": (Image.fromarray(rgb, "RGB"), {}),
        "rgba": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), {}),
        "palette": (palette, {}),
        "palette_trns": (transparent, {"transparency": transparent.info["transparency"]}),
    }


def test_png_every_kind_is_bit_identical(preprocess_dump: Path, tmp_path: Path) -> None:
    spec = Preprocessing(image_size=64, resize_size=70)
    spec_file = _spec_file(tmp_path, spec)
    for name, (image, options) in _png_cases(_rng("png"), 83, 97).items():
        path = tmp_path / f"{name}.png"
        image.save(path, **options)
        np.testing.assert_array_equal(_cpp(preprocess_dump, spec_file, path, 64), preprocess(path, spec), err_msg=name)


def test_png_16_bit_rgb_and_4_bit_gray(preprocess_dump: Path, tmp_path: Path) -> None:
    """Kinds Pillow cannot write: 16-bit RGB (Pillow reads its high bytes) and 2/4-bit grey, hand-encoded."""
    from tests.helpers.pngraw import write_png

    rng = _rng("png-raw")
    spec = Preprocessing(image_size=64)
    spec_file = _spec_file(tmp_path, spec)
    cases = {
        "rgb16": (rng.integers(0, 65536, (70, 66, 3), dtype=np.uint16), 16, 2),
        "rgba16": (rng.integers(0, 65536, (70, 66, 4), dtype=np.uint16), 16, 6),
        "gray4": (rng.integers(0, 16, (70, 66), dtype=np.uint8), 4, 0),
        "gray2": (rng.integers(0, 4, (70, 66), dtype=np.uint8), 2, 0),
    }
    for name, (pixels, depth, color) in cases.items():
        path = write_png(tmp_path / f"{name}.png", pixels, depth, color)
        np.testing.assert_array_equal(_cpp(preprocess_dump, spec_file, path, 64), preprocess(path, spec), err_msg=name)


def test_jpeg_within_the_stated_bound(preprocess_dump: Path, tmp_path: Path) -> None:
    rng = _rng("jpeg")
    spec = Preprocessing(image_size=64)
    spec_file = _spec_file(tmp_path, spec)
    smooth = (np.add.outer(np.arange(90), np.arange(120)) % 256).astype(np.uint8)
    images = {
        "gray": Image.fromarray(smooth, "L"),
        "color": Image.fromarray(np.dstack([smooth, smooth[::-1], rng.integers(0, 256, smooth.shape, dtype=np.uint8)]), "RGB"),
    }
    for name, image in images.items():
        for quality, subsampling in ((95, 0), (60, 2)):
            path = tmp_path / f"{name}-{quality}.jpg"
            image.save(path, quality=quality, subsampling=subsampling)
            diff = np.abs(_cpp(preprocess_dump, spec_file, path, 64) - preprocess(path, spec)).max()
            assert diff <= JPEG_BOUND, (name, quality, diff)


def test_jpeg_exif_orientation_applied(preprocess_dump: Path, tmp_path: Path) -> None:
    """ImageOps.exif_transpose, as load_image applies it: every orientation 2..8 on a non-square picture."""
    rng = _rng("exif")
    spec = Preprocessing(image_size=32, resize_size=40)
    spec_file = _spec_file(tmp_path, spec)
    image = Image.fromarray((np.add.outer(np.arange(60), 3 * np.arange(90)) % 256).astype(np.uint8), "L")
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        image.save(path, quality=95, exif=exif.tobytes())
        diff = np.abs(_cpp(preprocess_dump, spec_file, path, 32) - preprocess(path, spec)).max()
        assert diff <= JPEG_BOUND, (orientation, diff)
    del rng


def test_real_xrays_png_pgm_bit_identical_and_jpeg_bound(preprocess_dump: Path, real_data_dir: Path, tmp_path: Path) -> None:
    """Real chest films: as 8-bit PNG, 16-bit PNG and PGM bit-identical; the original JPEGs within the bound."""
    from dacovid_export.data.image_folder import find_images

    spec = Preprocessing(image_size=224)
    spec_file = _spec_file(tmp_path, spec)
    sources = find_images(real_data_dir)[::110]
    worst = 0.0
    for i, source in enumerate(sources):
        gray = Image.open(source).convert("L")
        converted = {
            f"{i}.png": gray,
            f"{i}.pgm": gray,
            f"{i}-16.png": Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257),
        }
        for name, image in converted.items():
            path = tmp_path / name
            image.save(path)
            np.testing.assert_array_equal(_cpp(preprocess_dump, spec_file, path, 224), preprocess(path, spec), err_msg=f"{source} as {name}")
        worst = max(worst, float(np.abs(_cpp(preprocess_dump, spec_file, source, 224) - preprocess(source, spec)).max()))
    assert worst <= JPEG_BOUND, worst

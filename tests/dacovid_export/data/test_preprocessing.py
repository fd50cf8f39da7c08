from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import (
    Preprocessing,
    load_image,
    preprocess,
    preprocess_batch,
    preprocess_train,
    to_float_gray,
)

SPEC = Preprocessing(image_size=64)


def _gradient(h: int = 80, w: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx + yy) / (h + w - 2)).astype(np.float32)  # 0..1


def test_output_shape_dtype_and_normalisation() -> None:
    x = preprocess(np.full((70, 70), 0.485, dtype=np.float32), SPEC)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    # channel 0 mean is 0.485: a uniform 0.485 image becomes exactly 0 there
    np.testing.assert_allclose(x[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[1], (0.485 - 0.456) / 0.224, atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "JPEG"])
def test_all_image_modes_load_and_agree(tmp_path, mode: str) -> None:
    gray = _gradient()
    ref = preprocess(gray, SPEC)
    if mode == "I;16":
        img = Image.fromarray((gray * 65535).round().astype(np.uint16))
        path = tmp_path / "x16.png"
    elif mode == "JPEG":
        img = Image.fromarray((gray * 255).round().astype(np.uint8), mode="L")
        path = tmp_path / "x.jpg"
    else:
        img = Image.fromarray((gray * 255).round().astype(np.uint8), mode="L").convert(mode)
        path = tmp_path / f"x_{mode}.png"
    img.save(path)
    out = preprocess(path, SPEC)
    tolerance = 0.05 if mode == "JPEG" else 0.03  # 8-bit quantisation (and JPEG loss) vs the float reference
    assert np.abs(out - ref).max() < tolerance


def test_sixteen_bit_keeps_precision(tmp_path) -> None:
    gray = _gradient()
    Image.fromarray((gray * 65535).round().astype(np.uint16)).save(tmp_path / "x.png")
    loaded = to_float_gray(tmp_path / "x.png")
    assert loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, gray, atol=1 / 65535)


def test_rgba_transparent_pixels_become_black() -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent
    gray = to_float_gray(Image.fromarray(rgba, mode="RGBA"))
    assert gray.max() == 0.0


def test_shorter_side_resize_keeps_aspect_and_centre_crops() -> None:
    # a wide image with a bright left third: the centre crop must drop most of it
    img = np.zeros((100, 300), dtype=np.float32)
    img[:, :100] = 1.0
    out = preprocess(img, SPEC)
    assert out.shape == (3, 64, 64)
    assert (out[0] > 0).mean() < 0.05


def test_squash_policy_keeps_everything() -> None:
    img = np.zeros((100, 300), dtype=np.float32)
    img[:, :100] = 1.0
    out = preprocess(img, Preprocessing(image_size=64, resize_policy="squash", resize_size=64))
    assert 0.25 < (out[0] > 0).mean() < 0.4


def test_train_transform_is_seeded_and_varies() -> None:
    gray = _gradient()
    a = preprocess_train(gray, SPEC, np.random.default_rng(0))
    b = preprocess_train(gray, SPEC, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    outs = {preprocess_train(gray, SPEC, np.random.default_rng(s)).tobytes() for s in range(6)}
    assert len(outs) > 1


def test_batch() -> None:
    assert preprocess_batch([_gradient(), _gradient(50, 50)], SPEC).shape == (2, 3, 64, 64)
    with pytest.raises(UserInputError, match="no images"):
        preprocess_batch([], SPEC)


def test_round_trip_through_dict() -> None:
    spec = Preprocessing(image_size=96, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bicubic")
    assert Preprocessing.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_size": 16}, "image_size=16"),
        ({"image_size": 64, "resize_size": 32}, "resize_size=32"),
        ({"resize_policy": "crop"}, "resize_policy='crop'"),
        ({"std": (0.2, 0.0, 0.2)}, "std="),
        ({"mean": (0.5, 0.5)}, "mean="),
    ],
)
def test_bad_specs(kwargs: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        Preprocessing(**kwargs)


def test_missing_and_corrupt_images(tmp_path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(UserInputError, match="unreadable or corrupt"):
        preprocess(bad, SPEC)


def test_bad_arrays() -> None:
    with pytest.raises(UserInputError, match="NaN"):
        to_float_gray(np.full((8, 8), np.nan, dtype=np.float32))
    with pytest.raises(UserInputError, match="shape"):
        to_float_gray(np.zeros((2, 8, 8, 8), dtype=np.uint8))


def test_aspect_ratio_is_bounded_before_any_resize(tmp_path) -> None:
    """A strip would resize into gigabytes; up to MAX_ASPECT_RATIO it is an image, beyond it an unreadable one."""
    from dacovid_export.data.preprocessing import MAX_ASPECT_RATIO, load_image

    spec = Preprocessing(image_size=64)
    assert preprocess(np.zeros((4, 4 * MAX_ASPECT_RATIO), np.uint8), spec).shape == (3, 64, 64)
    with pytest.raises(UserInputError, match=r"4x69 pixels, sides in a ratio of 17:1 \(at most 16:1 .*to 73 would make it 73x1259\)"):
        preprocess(np.zeros((69, 4), np.uint8), spec)
    with pytest.raises(UserInputError, match="ratio of 20:1"):
        preprocess(Image.new("L", (1, 20)), spec)
    strip = tmp_path / "strip.png"
    Image.new("L", (100_000, 2)).save(strip)
    with pytest.raises(UserInputError, match=r"strip\.png' is unreadable: 100000x2 pixels, sides in a ratio of 50000:1"):
        load_image(strip)

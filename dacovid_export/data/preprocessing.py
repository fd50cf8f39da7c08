"""The one preprocessing definition: training, evaluation, export metadata, calibration and runtime all use it.

An image goes: decode (any PIL mode, 8 or 16 bit; DICOM by content, :mod:`.dicom`) -> float32 in [0, 1] ->
grayscale (CXRs are grayscale; colour scans are reduced to luminance) ->
resize -> centre crop to ``image_size`` -> replicate to 3 channels ->
``(x - mean) / std``. Output: float32 ``3 x image_size x image_size`` (CHW).

Resizing works on float32 planes (PIL mode "F"), so 16-bit PNGs keep their
precision and 8-bit and 16-bit copies of the same picture give the same tensor.
Training replaces the centre crop by a random crop and a random horizontal flip
(:func:`preprocess_train`); everything else is shared.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import check_image_size, check_resize_size
from dacovid_export.data.dicom import (
    DICOM_EXTENSIONS,
    DicomIdentifiers,
    DicomVoi,
    decode_dicom,
    dicom_decoding_metadata,
    looks_like_dicom,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT_RATIO",
    "ImageInput",
    "Preprocessing",
    "load_image",
    "dicom_identifiers",
    "to_float_gray",
    "preprocess",
    "preprocess_train",
    "preprocess_batch",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff") + DICOM_EXTENSIONS

# Longer side / shorter side of an image we read. Resizing the shorter side to ``resize_size`` makes
# the longer one that many times longer: a 1 x 3,000,000 PNG (3 Mpx, under Pillow's limit) would become
# 256 x 768,000,000 floats (~0.8 TB). At 16:1 the resized image is at most 16 x resize_size^2 pixels
# (4 MB at 256, 88 MB at 1170); chest films are about 1:1 to 1:1.5.
MAX_ASPECT_RATIO = 16

ResizePolicy = Literal["shorter_side", "squash"]
# bytes: one encoded file (PNG, JPEG, DICOM, ...), as a service receives it
ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

# ImageNet statistics on the 0-1 scale: the backbone is ResNet50, and a
# torchvision ImageNet checkpoint expects exactly these.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input; stored in every checkpoint and artifact.

    ``resize_size``: the shorter side (``shorter_side``) or both sides (``squash``)
    before the ``image_size`` centre crop; ``None`` means ``round(image_size * 8 / 7)``
    (256 for 224, ImageNet's ratio). ``dicom_voi``: the one choice of the DICOM decoding (docs/dicom.md):
    ``"window"`` (VOI LUT or window when the file has one, else the full stored range) or ``"full_range"``.
    """

    image_size: int = 224
    resize_size: int | None = None
    resize_policy: ResizePolicy = "shorter_side"
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    dicom_voi: DicomVoi = "window"

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        if self.resize_size is None:
            # resolved once here so equality and the stored metadata never depend on "None"
            object.__setattr__(self, "resize_size", int(round(self.image_size * 8 / 7)))
        # bounded here, not only in the CLI: artifacts, caches and Triton's model parameters all build one
        check_resize_size(self.resize_size, self.image_size)
        if self.resize_policy not in ("shorter_side", "squash"):
            raise UserInputError(f"resize_policy={self.resize_policy!r}: use 'shorter_side' or 'squash'")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise UserInputError(f"interpolation={self.interpolation!r}: use 'bilinear' or 'bicubic'")
        if self.dicom_voi not in ("window", "full_range"):
            raise UserInputError(f"dicom_voi={self.dicom_voi!r}: use 'window' or 'full_range'")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise UserInputError(f"{name}={getattr(self, name)!r}: must be 3 finite numbers on the 0-1 scale")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise UserInputError(f"std={self.std!r}: every value must be > 0")

    @property
    def effective_resize_size(self) -> int:
        if self.resize_size is None:  # __post_init__ resolves it: only a bypassed constructor leaves it None
            raise RuntimeError("Preprocessing.resize_size was never resolved")
        return int(self.resize_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "resize_size": self.effective_resize_size,
            "resize_policy": self.resize_policy,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "color": "gray_to_3ch",
            "scale": "0-1",
            "layout": "NCHW",
            "dicom": dicom_decoding_metadata(self.dicom_voi),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessing":
        try:
            return cls(
                image_size=int(data["image_size"]),
                resize_size=None if data.get("resize_size") is None else int(data["resize_size"]),
                resize_policy=data.get("resize_policy", "shorter_side"),
                mean=_triple(data.get("mean", _IMAGENET_MEAN)),
                std=_triple(data.get("std", _IMAGENET_STD)),
                interpolation=data.get("interpolation", "bilinear"),
                # artifacts from before DICOM input have no entry: the one decoding path, VOI applied
                dicom_voi=_dicom_voi(data.get("dicom")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(f"preprocessing metadata {dict(data)!r} is incomplete or malformed: {exc}") from exc


def _triple(value: Any) -> tuple[float, float, float]:
    # as read from JSON; __post_init__ refuses anything but 3 finite numbers, with the value quoted
    return cast("tuple[float, float, float]", tuple(value))


def _dicom_voi(entry: object) -> DicomVoi:
    if entry is None:
        return "window"
    if not isinstance(entry, Mapping) or entry.get("voi", "window") not in ("window", "full_range"):
        raise UserInputError(f"preprocessing metadata 'dicom' entry {entry!r} is malformed: expected {{'voi': 'window' | 'full_range', ...}}")
    if int(entry.get("version", 1)) > 1:
        raise UserInputError(
            f"preprocessing metadata 'dicom' entry has decoding version {entry.get('version')!r}, newer than this "
            "dacovid-export reads (1): upgrade dacovid-export"
        )
    return "full_range" if entry.get("voi", "window") == "full_range" else "window"


def dicom_identifiers(image: object) -> DicomIdentifiers | None:
    """The SOPInstanceUID and StudyInstanceUID of an image :func:`load_image` read from a DICOM, else None."""
    info = getattr(image, "info", None)
    found = info.get("dacovid_dicom") if isinstance(info, dict) else None
    return found if isinstance(found, DicomIdentifiers) else None


def _load_dicom(source: Path | bytes, label: str, dicom_voi: DicomVoi, strict_dicom: bool) -> Image.Image:
    # Pillow's limit, 2x as load_image refuses between 1x and 2x too
    limit = Image.MAX_IMAGE_PIXELS
    decoded = decode_dicom(source, label, voi=dicom_voi, strict=strict_dicom, max_pixels=limit, max_aspect=MAX_ASPECT_RATIO)
    pixels = decoded.pixels
    img = Image.fromarray(pixels)  # float32 -> "F", uint8 H x W x 3 -> "RGB"
    img.info["dacovid_dicom"] = decoded.identifiers
    return img


def load_image(
    path: str | os.PathLike[str] | bytes, *, dicom_voi: DicomVoi = "window", strict_dicom: bool = False
) -> Image.Image:
    """Open and fully decode an image; a missing, corrupt or oversized file raises :class:`UserInputError`.

    ``path`` is a file, or the encoded bytes of one (what a service receives).
    A DICOM (recognised by content, any name) is decoded by :func:`~dacovid_export.data.dicom.decode_dicom`
    to a mode ``"F"`` image in [0, 1] (8-bit colour: ``"RGB"``), its UIDs in :func:`dicom_identifiers`;
    ``dicom_voi`` is the preprocessing's choice, ``strict_dicom`` refuses non-chest, non-CR/DX files.
    An image over Pillow's pixel limit (``Image.MAX_IMAGE_PIXELS``, which also flags
    decompression bombs: a 14000x14000 PNG can be 200 kB) is unreadable like any
    other bad file, so every caller's per-image handling applies to it.
    """
    if isinstance(path, bytes):
        label = f"image of {len(path)} bytes"
        if not path:
            raise UserInputError("image of 0 bytes is empty: send the encoded file (PNG, JPEG, ...)")
        head = path[:132]
        source: Path | io.BytesIO = io.BytesIO(path)
        dicom_source: Path | bytes = path
    else:
        source = Path(path)
        label = f"image {str(source)!r}"
        if not source.is_file():
            raise UserInputError(f"{label} does not exist or is not a file")
        try:
            with open(source, "rb") as fh:
                head = fh.read(132)
        except OSError as exc:
            raise UserInputError(f"{label} is unreadable: {exc}") from exc
        dicom_source = source
    if looks_like_dicom(head):
        if head[128:132] == b"DICM":
            return _load_dicom(dicom_source, label, dicom_voi, strict_dicom)
        # a bare dataset is recognised by its first bytes only: another format that starts alike goes to Pillow
        try:
            return _load_dicom(dicom_source, label, dicom_voi, strict_dicom)
        except UserInputError as dicom_error:
            try:
                return _load_pil(source, label)
            except UserInputError:
                raise dicom_error from None
    return _load_pil(source, label)


def _load_pil(source: Path | io.BytesIO, label: str) -> Image.Image:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; such an image is as unusable as one over 2x
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                _check_aspect(img.size, label)  # from the header: a strip bomb is never decoded
                img.load()
                return ImageOps.exif_transpose(img) or img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserInputError(
            f"{label} is unreadable: too large to decode safely ({exc.args[0] if exc.args else exc})"
        ) from exc
    except UserInputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserInputError(f"{label} is unreadable or corrupt: {exc}") from exc
    except MemoryError as exc:
        raise UserInputError(f"{label} is unreadable: not enough memory to decode it") from exc


def to_float_gray(image: ImageInput, *, dicom_voi: DicomVoi = "window", strict_dicom: bool = False) -> np.ndarray:
    """Any supported input -> float32 ``H x W`` luminance in [0, 1]; :class:`UserInputError` for anything unusable.

    ``dicom_voi`` and ``strict_dicom``: as in :func:`load_image`, for a path or bytes that hold a DICOM.
    """
    if isinstance(image, (str, os.PathLike, bytes)):
        image = load_image(image, dicom_voi=dicom_voi, strict_dicom=strict_dicom)
    if isinstance(image, np.ndarray):
        gray = _array_to_gray(image)
    elif isinstance(image, Image.Image):
        try:
            gray = _pil_to_gray(image)
        except (ValueError, OSError, SyntaxError) as exc:
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(f"PIL image in mode {image.mode!r} cannot be read as a grayscale picture: {exc}") from exc
    else:
        raise UserInputError(f"unsupported image input of type {type(image).__name__}: give a path, encoded bytes, a PIL image or a numpy array")
    if gray.size == 0:
        raise UserInputError(f"image of {gray.shape[1]}x{gray.shape[0]} pixels is empty: nothing to classify")
    return gray


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit PNGs decode to "I;16" or "I"; scale by the 16-bit range, not per image,
        # so the same exposure always maps to the same value.
        arr = np.asarray(image, dtype=np.float32) / 65535.0
        return np.clip(arr, 0.0, 1.0)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise UserInputError("PIL image in mode 'F' contains NaN or infinite values")
        return np.clip(arr, 0.0, 1.0)
    if mode == "LAB":
        # no PIL conversion from LAB; its L band is the lightness on 0-255
        return np.asarray(image.getchannel("L"), dtype=np.float32) / 255.0
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels become black (the film background), not undefined colour.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        try:
            image = image.convert("L")
        except ValueError:
            image = image.convert("RGB").convert("L")  # modes PIL converts to RGB only (e.g. HSV)
    return np.asarray(image, dtype=np.float32) / 255.0


def _array_to_gray(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = _array_to_unit(arr[..., :3])
        # ITU-R 601-2 luma, the transform PIL's convert("L") uses
        return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise UserInputError(f"image array of shape {arr.shape}: expected H x W, H x W x 1, H x W x 3 or H x W x 4")
    return _array_to_unit(arr)


def _array_to_unit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise UserInputError("image array contains NaN or infinite values")
        return np.clip(out, 0.0, 1.0)
    raise UserInputError(f"image array of dtype {arr.dtype}: use uint8, uint16 or float in [0, 1]")


def _resample(spec: Preprocessing) -> int:
    return Image.Resampling.BICUBIC if spec.interpolation == "bicubic" else Image.Resampling.BILINEAR


def _check_aspect(size: tuple[int, int], what: str, target: int | None = None) -> None:
    """:class:`UserInputError` (an unreadable image) when the sides of ``size`` (w, h) differ more than :data:`MAX_ASPECT_RATIO`."""
    short, long = sorted(size)
    if short > 0 and long > MAX_ASPECT_RATIO * short:
        ratio = long / short
        grown = f"to {target} would make it {target}x{round(target * ratio)}" if target else f"would make it {ratio:.0f} times as long"
        raise UserInputError(
            f"{what} is unreadable: {size[0]}x{size[1]} pixels, sides in a ratio of {ratio:.0f}:1 (at most "
            f"{MAX_ASPECT_RATIO}:1 is read: resizing its shorter side {grown}); crop it to the radiograph"
        )


def _resize(gray: np.ndarray, spec: Preprocessing) -> np.ndarray:
    h, w = gray.shape
    target = spec.effective_resize_size
    _check_aspect((w, h), "image", target)  # before resizing; arrays and PIL images do not pass through load_image
    if spec.resize_policy == "squash":
        new_w, new_h = target, target
    elif h <= w:
        new_h, new_w = target, max(target, int(round(w * target / h)))
    else:
        new_w, new_h = target, max(target, int(round(h * target / w)))
    if (new_h, new_w) == (h, w):
        return gray
    resized = Image.fromarray(gray, mode="F").resize((new_w, new_h), _resample(spec))
    return np.asarray(resized, dtype=np.float32)


def _normalize(gray: np.ndarray, spec: Preprocessing) -> np.ndarray:
    # 1 x H x W -> 3 x H x W, one mean/std per channel
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((gray[None, :, :] - mean) / std, dtype=np.float32)


def preprocess(image: ImageInput, spec: Preprocessing, *, strict_dicom: bool = False) -> np.ndarray:
    """Evaluation transform: float32 ``3 x S x S`` with ``S = spec.image_size``."""
    gray = _resize(to_float_gray(image, dicom_voi=spec.dicom_voi, strict_dicom=strict_dicom), spec)
    h, w = gray.shape
    s = spec.image_size
    top, left = (h - s) // 2, (w - s) // 2
    return _normalize(gray[top : top + s, left : left + s], spec)


def preprocess_train(
    image: ImageInput, spec: Preprocessing, rng: np.random.Generator, *, strict_dicom: bool = False
) -> np.ndarray:
    """Training transform: same as :func:`preprocess` but a random crop and a random horizontal flip."""
    gray = _resize(to_float_gray(image, dicom_voi=spec.dicom_voi, strict_dicom=strict_dicom), spec)
    h, w = gray.shape
    s = spec.image_size
    top = int(rng.integers(0, h - s + 1))
    left = int(rng.integers(0, w - s + 1))
    crop = gray[top : top + s, left : left + s]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return _normalize(crop, spec)


def preprocess_batch(images: Sequence[ImageInput], spec: Preprocessing, *, strict_dicom: bool = False) -> np.ndarray:
    """float32 ``N x 3 x S x S``."""
    if len(images) == 0:
        raise UserInputError("no images given")
    return np.stack([preprocess(img, spec, strict_dicom=strict_dicom) for img in images])

"""What an image is, by content: the fingerprints that tell training images from unseen ones.

An image's fingerprint is two 64-bit digests (16 bytes):

- ``file``: the first 8 bytes of the SHA-256 of the file's bytes: the same file under any name,
  through a symlink or hard link, and any byte-for-byte copy;
- ``pixels``: the first 8 bytes of the SHA-256 of its decoded luminance (what
  :func:`~dacovid_export.data.preprocessing.to_float_gray` gives, the first step every consumer
  shares) rounded to 16-bit steps, with its height and width. A lossless re-encoding has the same
  pixels: a PNG resaved, an 8-bit PNG written as 16-bit (``v`` -> ``257 v``: the same value on
  [0, 1]), a PNG written into a DICOM at its full stored range.

Two digests, not one: bytes stay recognised when a decoder changes between versions, and pixels
stay recognised when the container changes. 64 bits each: among 10,000 training images the chance
that any of 10,000 other images collides by accident is ~5e-12, and 10,000 images take 160 kB.

:class:`ImageRecord` is what a training run knows about its images (the training part and the
held-out part) and travels in the checkpoint (``uint8`` tensors, read by ``torch.load(weights_only=True)``),
in the run's split.json and in the ONNX metadata (base64 text): never pickled objects.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.progress import progress_bar

__all__ = [
    "FINGERPRINT_BYTES",
    "RECORD_FORMAT",
    "Fingerprint",
    "FingerprintSet",
    "ImageRecord",
    "fingerprint_image",
    "fingerprint_decoded",
    "fingerprint_files",
]

FINGERPRINT_BYTES = 16  # 8 of the file's SHA-256, 8 of the pixels'
RECORD_FORMAT = "dacovid-image-record/1"
_PIXEL_FORMAT = b"dacovid-luminance-u16/1"
_HALF = FINGERPRINT_BYTES // 2
# a run fingerprints the same files more than once (the check before long work, then the work): keyed by what
# changes when a file does, so an edited file is read again
_MEMO: dict[tuple[str, int, int, int], "Fingerprint"] = {}
_MEMO_LIMIT = 100_000


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """One image's content digests; ``sha256`` is the full digest of the file's bytes (for audit records)."""

    sha256: str
    pixels: bytes  # 8 bytes

    @property
    def file(self) -> bytes:
        return bytes.fromhex(self.sha256[: 2 * _HALF])

    @property
    def raw(self) -> bytes:
        return self.file + self.pixels

    def hex(self) -> str:
        """``<file 16 hex>:<pixels 16 hex>``: how JSON records and reports name the image."""
        return f"{self.file.hex()}:{self.pixels.hex()}"


def _pixel_digest(gray: np.ndarray) -> bytes:
    """8 bytes of the SHA-256 of ``H x W`` luminance in [0, 1] on a 16-bit grid (so 8- and 16-bit encodings agree)."""
    levels = np.rint(np.clip(gray, 0.0, 1.0) * 65535.0).astype("<u2")
    digest = hashlib.sha256(_PIXEL_FORMAT)
    digest.update(np.asarray(levels.shape, dtype="<u4").tobytes())
    digest.update(np.ascontiguousarray(levels).tobytes())
    return digest.digest()[:_HALF]


def fingerprint_decoded(data: bytes, image: Image.Image) -> Fingerprint:
    """The fingerprint of an image whose bytes ``data`` were already decoded to ``image`` (no second decode)."""
    from dacovid_export.data.preprocessing import to_float_gray

    return Fingerprint(hashlib.sha256(data).hexdigest(), _pixel_digest(to_float_gray(image)))


def fingerprint_image(path: str | os.PathLike[str]) -> Fingerprint:
    """Read and decode one image file; :class:`UserInputError` for a missing or undecodable one."""
    from dacovid_export.data.dicom import DicomWarning
    from dacovid_export.data.preprocessing import load_image

    path = Path(path)
    try:
        stat = path.stat()
        key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if key in _MEMO:
            return _MEMO[key]
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"image {str(path)!r} cannot be read: {exc}") from exc
    # decoded from the path (its messages name the file); the bytes were just read, so this read is cached.
    # A DICOM's warnings (not a chest CR/DX) are said once, by the decode that classifies it, not by this one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        image = load_image(path)
    fingerprint = fingerprint_decoded(data, image)
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = fingerprint
    return fingerprint


def fingerprint_files(
    paths: Sequence[str | os.PathLike[str]], *, what: str = "images", progress: bool = False
) -> list[Fingerprint]:
    """The fingerprints of ``paths``, in order (a progress bar when asked: each image is decoded once)."""
    out = []
    for path in progress_bar(paths, desc=f"fingerprinting {what}", unit="img", enabled=progress):
        out.append(fingerprint_image(path))
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class FingerprintSet:
    """A set of image fingerprints: ``N x 16`` bytes, and lookups of either digest."""

    table: np.ndarray  # uint8 N x 16, read-only
    _files: frozenset[bytes] = dataclasses.field(init=False, repr=False)
    _pixels: frozenset[bytes] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        table = np.asarray(self.table)
        if table.dtype != np.uint8 or table.ndim != 2 or table.shape[1] != FINGERPRINT_BYTES:
            raise UserInputError(
                f"image fingerprints of shape {table.shape} ({table.dtype}): expected N x {FINGERPRINT_BYTES} uint8; "
                "the record is damaged: re-run dacovid-train, or pass --training-data"
            )
        table = np.ascontiguousarray(table)
        table.flags.writeable = False
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "_files", frozenset(bytes(row[:_HALF]) for row in table))
        object.__setattr__(self, "_pixels", frozenset(bytes(row[_HALF:]) for row in table))

    @classmethod
    def of(cls, fingerprints: Iterable[Fingerprint]) -> "FingerprintSet":
        rows = [np.frombuffer(f.raw, dtype=np.uint8) for f in fingerprints]
        return cls(np.stack(rows) if rows else np.zeros((0, FINGERPRINT_BYTES), np.uint8))

    def __len__(self) -> int:
        return len(self.table)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FingerprintSet) and np.array_equal(self.table, other.table)

    # defining __eq__ leaves __hash__ None (eq=False: the dataclass adds none): equal by content, not hashed

    def __contains__(self, fingerprint: object) -> bool:
        if not isinstance(fingerprint, Fingerprint):
            return False
        return fingerprint.file in self._files or fingerprint.pixels in self._pixels

    def to_base64(self) -> str:
        return base64.b64encode(self.table.tobytes()).decode("ascii")

    @classmethod
    def from_base64(cls, text: object, source: str) -> "FingerprintSet":
        try:
            data = base64.b64decode(str(text), validate=True)
        except (ValueError, TypeError) as exc:
            raise UserInputError(f"{source}: image fingerprints are not valid base64 ({exc}); the record is damaged") from exc
        if len(data) % FINGERPRINT_BYTES:
            raise UserInputError(f"{source}: {len(data)} bytes of image fingerprints is not a whole number of records")
        return cls(np.frombuffer(data, dtype=np.uint8).reshape(-1, FINGERPRINT_BYTES).copy())


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """Which images trained a checkpoint (``train``) and which were held out (``val``); ``source`` says who said so."""

    train: FingerprintSet
    val: FingerprintSet
    source: str = dataclasses.field(compare=False)

    def trained(self, fingerprint: Fingerprint) -> bool:
        return fingerprint in self.train

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (split.json, ONNX metadata): base64 of the ``N x 16`` tables."""
        return {"format": RECORD_FORMAT, "train": self.train.to_base64(), "val": self.val.to_base64(),
                "counts": {"train": len(self.train), "val": len(self.val)}}

    @classmethod
    def from_dict(cls, data: object, source: str) -> "ImageRecord":
        if not isinstance(data, Mapping) or data.get("format") != RECORD_FORMAT:
            raise UserInputError(f"{source}: the image record is not a '{RECORD_FORMAT}' record; it is damaged or newer")
        return cls(FingerprintSet.from_base64(data.get("train", ""), source),
                   FingerprintSet.from_base64(data.get("val", ""), source), source)

    def to_tensors(self) -> dict[str, Any]:
        """The checkpoint form: uint8 tensors, which ``torch.load(weights_only=True)`` reads without running code."""
        import torch

        return {"format": RECORD_FORMAT, "train": torch.from_numpy(self.train.table.copy()),
                "val": torch.from_numpy(self.val.table.copy())}

    @classmethod
    def from_tensors(cls, data: object, source: str) -> "ImageRecord":
        if not isinstance(data, Mapping) or data.get("format") != RECORD_FORMAT:
            raise UserInputError(f"{source}: the image record is not a '{RECORD_FORMAT}' record; it is damaged or newer")
        try:
            return cls(FingerprintSet(np.asarray(data["train"].numpy())), FingerprintSet(np.asarray(data["val"].numpy())), source)
        except (KeyError, AttributeError, TypeError) as exc:
            raise UserInputError(f"{source}: the image record is damaged ({type(exc).__name__}: {exc})") from exc

"""DICOM chest X-rays -> the [0, 1] luminance :mod:`.preprocessing` takes, one documented way (docs/dicom.md).

A file (or its encoded bytes) is DICOM by content, not by name: ``DICM`` at byte 128 (Part 10 file), or a
bare dataset without preamble (first tag in group 0002 or 0008, either byte order). The steps, in order:

1. refuse what is not one radiograph: a non-image SOP class, no pixel data, several frames, a size over
   Pillow's pixel limit or with sides more than 16:1 apart (read from the header, before decoding), a
   transfer syntax no installed decoder reads (naming the package), a truncated file;
2. stored values, ``BitsStored`` respected (pydicom masks the unused high bits and sign-extends);
3. ``PixelPaddingValue`` (up to ``PixelPaddingRangeLimit``) marks pixels outside the film, on stored values;
4. the modality LUT: ``ModalityLUTSequence``, else ``RescaleSlope``/``RescaleIntercept``;
5. the VOI: ``VOILUTSequence`` (its first LUT), else the first ``WindowCenter``/``WindowWidth`` pair with its
   ``VOILUTFunction`` (LINEAR, LINEAR_EXACT, SIGMOID), else the full stored range (every value ``BitsStored``
   can hold, through the modality LUT: never a per-image min/max, so one exposure always maps alike);
   ``Preprocessing(dicom_voi="full_range")`` skips VOI LUT and window;
6. ``MONOCHROME1`` inverted (``1 - y``), so bright is always dense tissue, as in MONOCHROME2;
7. padding pixels set to 0 (black, the film background, as transparent PNG pixels are);
8. colour (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its palette): 8-bit images become
   a PIL RGB image and are reduced to luminance like any RGB file; deeper ones by the same ITU-R 601 weights.

Modality other than CR/DX, or a body part other than chest, is a :class:`DicomWarning` (or, strict, a refusal).
No patient-identifying attribute is read into a message: only UIDs, technical attributes and the file's label.
pydicom and its decoders are imported lazily (extra ``[dicom]``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Literal, SupportsIndex, SupportsInt

import numpy as np

from dacovid_export.core.errors import (
    MissingDependencyError,
    UserInputError,
    first_line,
)

__all__ = [
    "DICOM_EXTENSIONS",
    "DICOM_INSTALL_HINT",
    "DicomVoi",
    "DicomWarning",
    "DicomIdentifiers",
    "DicomImage",
    "dicom_decoding_metadata",
    "looks_like_dicom",
    "file_looks_like_dicom",
    "decode_dicom",
]

DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")
DICOM_INSTALL_HINT = "pip install 'dacovid-export[dicom]' (pydicom, python-gdcm, pylibjpeg-openjpeg)"
DECODING_VERSION = 1

DicomVoi = Literal["window", "full_range"]

# SOP classes that hold no radiograph (reports, plans, waveforms, ...); matched on pydicom's UID name
_NON_IMAGE_SOP_WORDS = (
    "SR Storage", "Waveform", "RT Plan", "RT Ion Plan", "RT Structure Set", "RT Beams", "RT Brachy",
    "Presentation State", "Key Object", "Encapsulated", "Raw Data", "Spectroscopy", "Media Storage Directory",
    "Segmentation", "Registration", "Measurement Report", "Dose", "Surface", "Parametric Map",
)
_CHEST_MODALITIES = ("CR", "DX")
_CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "")
# transfer syntaxes (by pydicom name) whose decoder is a package that is not in [dicom]
_EXTRA_DECODERS = {"JPEG Extended": "pylibjpeg-libjpeg (GPLv3; 12-bit JPEG Extended, which GDCM does not decode)"}


class DicomWarning(UserWarning):
    """A DICOM that is read, but is probably not a chest radiograph (modality, body part)."""


@dataclasses.dataclass(frozen=True)
class DicomIdentifiers:
    """What joins a result back to PACS; UIDs only, never the patient."""

    sop_instance_uid: str | None
    study_instance_uid: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"sop_instance_uid": self.sop_instance_uid, "study_instance_uid": self.study_instance_uid}


@dataclasses.dataclass(frozen=True)
class DicomImage:
    """A decoded DICOM: ``pixels`` is float32 ``H x W`` luminance in [0, 1], or uint8 ``H x W x 3`` (8-bit colour)."""

    pixels: np.ndarray
    identifiers: DicomIdentifiers
    photometric: str


def dicom_decoding_metadata(voi: DicomVoi) -> dict[str, Any]:
    """The ``dicom`` entry of the preprocessing metadata: the decoding path above, with its one choice ``voi``."""
    return {
        "version": DECODING_VERSION,
        "voi": voi,
        "modality_lut": "lut_else_rescale",
        "window": "first_voi_lut_else_first_window_else_full_stored_range" if voi == "window" else "full_stored_range",
        "monochrome1": "inverted",
        "padding": "black",
        "color": "itu_r_601_luminance",
    }


def looks_like_dicom(head: bytes) -> bool:
    """True when ``head`` (the first 132 bytes or more) starts a DICOM file or a bare DICOM dataset."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # a dataset without preamble: (0002,xxxx) or (0008,xxxx) first, little or big endian,
    # then an explicit VR (two capital letters) or an implicit 4-byte length
    if head[:2] in (b"\x02\x00", b"\x08\x00") or head[:2] in (b"\x00\x02", b"\x00\x08"):
        vr = head[4:6]
        explicit = vr.isalpha() and vr.isupper()
        implicit_len = int.from_bytes(head[4:8], "little" if head[0] else "big")
        return explicit or implicit_len < (1 << 16)
    return False


def file_looks_like_dicom(path: str | os.PathLike[str]) -> bool:
    """:func:`looks_like_dicom` on the start of a file; False when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return looks_like_dicom(fh.read(132))
    except OSError:
        return False


def _pydicom() -> Any:
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"pydicom is not installed (needed to read DICOM images): {DICOM_INSTALL_HINT}") from exc
    return pydicom


def decode_dicom(
    source: str | os.PathLike[str] | bytes,
    label: str,
    *,
    voi: DicomVoi = "window",
    strict: bool = False,
    max_pixels: int | None = None,
    max_aspect: int = 16,
) -> DicomImage:
    """Decode one DICOM radiograph (see the module docstring); :class:`UserInputError` for every refusal.

    ``label`` names the image in messages (the path, or "image of N bytes"); ``max_pixels``: Pillow's limit
    (``Image.MAX_IMAGE_PIXELS``), checked against Rows x Columns before decoding.
    """
    if voi not in ("window", "full_range"):
        raise UserInputError(f"dicom_voi={voi!r}: use 'window' or 'full_range'")
    pydicom = _pydicom()
    fp: BinaryIO | Path = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about harmless deviations; refusals below are ours
            ds = pydicom.dcmread(fp, force=True)
    except Exception as exc:  # pydicom raises many types for a broken file
        raise UserInputError(f"DICOM {label} is truncated or corrupt ({type(exc).__name__}: {first_line(exc)}); export it again from PACS") from exc

    ids = DicomIdentifiers(
        sop_instance_uid=_text(ds.get("SOPInstanceUID")), study_instance_uid=_text(ds.get("StudyInstanceUID"))
    )
    sop = ds.get("SOPClassUID")
    sop_name = str(getattr(sop, "name", "") or "") if sop is not None else ""
    if sop_name and any(word in sop_name for word in _NON_IMAGE_SOP_WORDS):
        raise UserInputError(f"DICOM {label} is a {sop_name!r} (SOP class {str(sop)}), not an image: give the radiograph's DICOM")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if sop is None:  # pydicom stops quietly at the end of a cut file: what is left has no SOP class either
            raise UserInputError(f"DICOM {label} is truncated or corrupt (it ends before a SOP class and pixel data); export it again from PACS")
        raise UserInputError(f"DICOM {label} has no pixel data (SOP class {sop_name or str(sop) or 'not given'}): give the radiograph's DICOM, not a report or header")
    frames = _int(ds.get("NumberOfFrames"), 1)
    if frames != 1:
        raise UserInputError(f"DICOM {label} has {frames} frames: one radiograph per file is read; split it (e.g. one file per frame) and give the frame to classify")
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    if rows <= 0 or cols <= 0:
        raise UserInputError(f"DICOM {label} is {cols}x{rows} pixels (Columns x Rows): empty or corrupt header; export it again")
    if max_pixels is not None and rows * cols > max_pixels:
        raise UserInputError(
            f"DICOM {label} is unreadable: too large to decode safely ({cols}x{rows} = {rows * cols} pixels, the limit is {max_pixels})"
        )
    short, long = sorted((rows, cols))
    if long > max_aspect * short:
        raise UserInputError(
            f"DICOM {label} is unreadable: {cols}x{rows} pixels, sides in a ratio of {long / short:.0f}:1 (at most {max_aspect}:1 is read); crop it to the radiograph"
        )
    _check_modality(ds, label, strict)

    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # a bare dataset: its encoding is how pydicom read it
        implicit, little = getattr(ds, "original_encoding", (True, True))
        uid = pydicom.uid
        if meta is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            uid.ImplicitVRLittleEndian if implicit else uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
        )
    tsyntax = ds.file_meta.TransferSyntaxUID
    _check_decoder(pydicom, tsyntax, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except MemoryError as exc:
        raise UserInputError(f"DICOM {label} is unreadable: not enough memory to decode it") from exc
    except Exception as exc:
        text = first_line(exc)
        for name, package in _EXTRA_DECODERS.items():
            if name in str(getattr(tsyntax, "name", "")):
                raise UserInputError(
                    f"DICOM {label}: transfer syntax {tsyntax.name!r} ({str(tsyntax)}) is not decoded by the installed plugins: pip install {package}, or export the image uncompressed"
                ) from exc
        raise UserInputError(f"DICOM {label} is truncated or corrupt ({type(exc).__name__}: {text}); export it again from PACS") from exc
    return DicomImage(pixels=_to_luminance(pydicom, ds, arr, label, voi), identifiers=ids, photometric=str(ds.get("PhotometricInterpretation", "")))


def _text(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _int(value: object, default: int) -> int:
    try:
        if value in (None, "") or not isinstance(value, (str, bytes, bytearray, SupportsInt, SupportsIndex)):
            return default  # what int() of anything else raised (TypeError) gave
        return int(value)
    except (TypeError, ValueError):
        return default


def _check_modality(ds: Any, label: str, strict: bool) -> None:
    modality = str(ds.get("Modality", "") or "").upper()
    body = str(ds.get("BodyPartExamined", "") or "").upper()
    problems = []
    if modality not in _CHEST_MODALITIES:
        problems.append(f"modality {modality or 'not given'!r} is not CR or DX")
    if body not in _CHEST_BODY_PARTS:
        problems.append(f"body part {body!r} is not the chest")
    if not problems:
        return
    what = "; ".join(problems)
    if strict:
        raise UserInputError(f"DICOM {label}: {what}, and --strict-dicom reads chest radiographs only: give a chest CR/DX image or leave out --strict-dicom")
    warnings.warn(f"DICOM {label}: {what}; classified anyway (--strict-dicom refuses it)", DicomWarning, stacklevel=3)


def _check_decoder(pydicom: Any, tsyntax: Any, label: str) -> None:
    if not tsyntax.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise UserInputError(
            f"DICOM {label}: transfer syntax {str(tsyntax)!r} ({tsyntax.name}) has no pixel decoder: export it uncompressed or in JPEG, JPEG-LS, JPEG 2000 or RLE"
        ) from None
    if not decoder.is_available:
        raise UserInputError(
            f"DICOM {label}: transfer syntax {tsyntax.name!r} ({str(tsyntax)}) needs a pixel decoder that is not installed: {DICOM_INSTALL_HINT}"
        )


def _linear(x: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """``(x - offset) * scale`` as float32, in place when ``x`` is already a float32 copy."""
    y = x if x.dtype == np.float32 else x.astype(np.float32)
    y -= np.float32(offset)
    y *= np.float32(scale)
    return y


def _window(x: np.ndarray, center: float, width: float, function: str, label: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing of modality values ``x`` (float32, overwritten) to [0, 1]."""
    if function == "SIGMOID":
        if width <= 0:
            raise UserInputError(f"DICOM {label}: WindowWidth {width} must be > 0 for SIGMOID; fix the header or use dicom_voi='full_range'")
        return (1.0 / (1.0 + np.exp(_linear(x, center, -4.0 / width)))).astype(np.float32)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise UserInputError(f"DICOM {label}: WindowWidth {width} must be > 0 for LINEAR_EXACT; fix the header or use dicom_voi='full_range'")
        return _linear(x, center - width / 2.0, 1.0 / width)  # (x - c) / w + 0.5
    if function not in ("LINEAR", ""):
        raise UserInputError(f"DICOM {label}: VOILUTFunction {function!r} is unknown: use LINEAR, LINEAR_EXACT or SIGMOID")
    if width < 1:
        raise UserInputError(f"DICOM {label}: WindowWidth {width} must be >= 1 for LINEAR; fix the header or use dicom_voi='full_range'")
    # (x - (c - 0.5)) / (w - 1) + 0.5; at width 1 the ramp is a step at c - 0.5
    if width == 1:
        return (x > center - 0.5).astype(np.float32)
    return _linear(x, center - 0.5 - (width - 1) / 2.0, 1.0 / (width - 1))


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _to_luminance(pydicom: Any, ds: Any, arr: np.ndarray, label: str, voi: DicomVoi) -> np.ndarray:
    from pydicom import pixels

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = pixels.apply_color_lut(arr, ds)
        photometric = "RGB"
    if arr.ndim == 3:
        # RGB, YBR_* (pydicom converts YBR to RGB); 8-bit as an RGB picture like any colour file
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr[..., :3])
        bits = _int(ds.get("BitsStored"), 8 * arr.dtype.itemsize)
        rgb = arr[..., :3].astype(np.float64) / float((1 << bits) - 1)
        return np.clip(rgb @ np.array([0.299, 0.587, 0.114]), 0.0, 1.0).astype(np.float32)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UserInputError(f"DICOM {label}: photometric interpretation {photometric!r} with one sample per pixel is not read: export it as MONOCHROME2")
    if np.issubdtype(arr.dtype, np.floating):
        stored = arr.astype(np.float64)
        lo, hi = float(np.nanmin(stored)), float(np.nanmax(stored))
        if not np.all(np.isfinite(stored)):
            raise UserInputError(f"DICOM {label}: float pixel data holds NaN or infinite values")
        padding = np.zeros(arr.shape, dtype=bool)
    else:
        bits = _int(ds.get("BitsStored"), 8 * arr.dtype.itemsize)
        signed = _int(ds.get("PixelRepresentation"), 0) == 1
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        padding = _padding_mask(ds, arr)
        stored = arr
    # modality LUT (or rescale); the full stored range follows it. float32 holds every 16-bit value exactly.
    x = pixels.apply_modality_lut(stored, ds).astype(np.float32)
    if "ModalityLUTSequence" in ds:
        ends = np.array([0.0, float((1 << int(ds.ModalityLUTSequence[0].LUTDescriptor[2])) - 1)])
    else:
        ends = np.asarray(pixels.apply_modality_lut(np.array([lo, hi], dtype=np.float64), ds), dtype=np.float64)
    y: np.ndarray | None = None
    if voi == "window" and "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        lut = ds.VOILUTSequence[0]
        out_bits = int(lut.LUTDescriptor[2])
        # the LUT is indexed by integer modality values (rounded when a rescale made them fractional)
        indices = stored if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds else np.rint(x).astype(np.int64)
        y = _linear(pixels.apply_voi(indices, ds, index=0), 0.0, 1.0 / float((1 << out_bits) - 1))
    elif voi == "window" and ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, ""):
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        y = _window(x, _first(ds.WindowCenter), _first(ds.WindowWidth), function, label)
    if y is None:
        lo_m, hi_m = float(ends.min()), float(ends.max())
        if hi_m <= lo_m:
            raise UserInputError(f"DICOM {label}: stored range {lo}..{hi} maps to the single value {lo_m}: the rescale or LUT is broken")
        y = _linear(x, lo_m, 1.0 / (hi_m - lo_m))
    np.clip(y, 0.0, 1.0, out=y)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), y, out=y)
    y[padding] = 0.0
    return y


def _padding_mask(ds: Any, arr: np.ndarray) -> np.ndarray:
    value = ds.get("PixelPaddingValue")
    if value is None:
        return np.zeros(arr.shape, dtype=bool)
    first = int(value)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return arr == first
    low, high = sorted((first, int(limit)))
    return (arr >= low) & (arr <= high)

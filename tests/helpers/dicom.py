"""Writing DICOM files for the tests: a chest DX from a pixel array, with the attributes a test names.

The patient attributes are fixed, recognisable strings, so a test can grep every output for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed: pip install -e '.[dicom]'")

from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

__all__ = ["PATIENT_NAME", "PATIENT_ID", "PATIENT_BIRTH_DATE", "dx_dataset", "write_dx", "recompress"]

PATIENT_NAME = "Doe^Jane^Secretname"
PATIENT_ID = "PID-7731-SECRET"
PATIENT_BIRTH_DATE = "19510417"
DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def dx_dataset(pixels: np.ndarray, *, bits_stored: int | None = None, **attrs: Any) -> FileDataset:
    """A DX MONOCHROME2 chest dataset holding ``pixels`` (uint8 or uint16 H x W); ``attrs`` override any attribute."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = PATIENT_BIRTH_DATE
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    allocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def write_dx(path: Path, pixels: np.ndarray, *, bits_stored: int | None = None, **attrs: Any) -> Path:
    dx_dataset(pixels, bits_stored=bits_stored, **attrs).save_as(path, enforce_file_format=True)
    return path


def recompress(src: Path, dst: Path, syntax: str) -> Path:
    """``src`` re-encoded losslessly: ``"jpeg_lossless"`` (GDCM, process 14 SV1) or ``"jpeg2000_lossless"`` (pydicom + OpenJPEG)."""
    if syntax == "jpeg2000_lossless":
        from pydicom.uid import JPEG2000Lossless

        ds = pydicom.dcmread(src)
        ds.compress(JPEG2000Lossless)
        ds.save_as(dst, enforce_file_format=True)
        return dst
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm is not installed: pip install -e '.[dicom]'")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise RuntimeError(f"GDCM cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM cannot encode {src} as JPEG lossless")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM cannot write {dst}")
    return dst

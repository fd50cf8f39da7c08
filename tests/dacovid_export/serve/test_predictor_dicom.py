"""DICOM through the Predictor and ``check``: the same answers as the image a DICOM was made from, UIDs, no PHI.

The real-image test writes its DICOMs (into tmp_path) from the chest X-rays named by DACOVID_REAL_DATA and skips,
saying so, without them; the rest runs on synthetic images.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacovid_export.data.dicom import DicomWarning
from dacovid_export.serve.predictor import Prediction, Predictor
from tests.helpers.dicom import (
    PATIENT_BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    pydicom,
    recompress,
    write_dx,
)

CLASSES = ("Normal", "Pneumonia", "COVID-19")


def _probs(p: Prediction) -> np.ndarray:
    return np.array([p.probabilities[c] for c in CLASSES])


def _variants(pixels: np.ndarray, folder: Path, stem: str) -> dict[str, Path]:
    """Lossless DICOM copies of 8-bit ``pixels``: each decodes to exactly ``pixels / 255``."""
    folder.mkdir(parents=True, exist_ok=True)
    p16 = pixels.astype(np.uint16)
    out = {
        "dx8": write_dx(folder / f"{stem}.dx8.dcm", pixels),
        "monochrome1": write_dx(folder / f"{stem}.m1.dcm", 255 - pixels, PhotometricInterpretation="MONOCHROME1"),
        "16bit": write_dx(folder / f"{stem}.16.dcm", p16 * 257),
        # 12 bits stored, rescale 2x, LINEAR window mapping 16p to p / 255
        "12bit_rescale_window": write_dx(folder / f"{stem}.12w.dcm", p16 * 8, bits_stored=12, RescaleSlope=2,
                                          RescaleIntercept=0, WindowCenter=2040.5, WindowWidth=4081),
        "monochrome1_12bit_window": write_dx(folder / f"{stem}.m1w.dcm", (255 - p16) * 8, bits_stored=12,
                                              PhotometricInterpretation="MONOCHROME1", RescaleSlope=2,
                                              RescaleIntercept=0, WindowCenter=2040.5, WindowWidth=4081),
    }
    out["jpeg_lossless"] = recompress(out["12bit_rescale_window"], folder / f"{stem}.jpegll.dcm", "jpeg_lossless")
    out["jpeg2000_lossless"] = recompress(out["monochrome1"], folder / f"{stem}.j2k.dcm", "jpeg2000_lossless")
    return out


@pytest.fixture(scope="module")
def predictor(tiny_fp32_onnx: Path):
    with Predictor.from_path(tiny_fp32_onnx, device="cpu") as p:
        yield p


@pytest.mark.realdata
def test_real_images_as_dicom_give_the_same_answer(predictor: Predictor, real_data_dir: Path, tmp_path: Path) -> None:
    sources = []
    for folder in sorted(p for p in real_data_dir.iterdir() if p.is_dir()):
        sources.extend(sorted(f for f in folder.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))[:2])
    assert len(sources) >= 2, f"no images under {real_data_dir}"
    for i, source in enumerate(sources):
        with Image.open(source) as img:
            pixels = np.asarray(img.convert("L"))  # what load_image + luminance give for the source file
        reference = predictor.predict_one(source)
        variants = _variants(pixels, tmp_path / str(i), f"img{i}")
        got = predictor.predict(list(variants.values()))
        for (kind, path), p in zip(variants.items(), got):
            assert p.class_name == reference.class_name, (kind, source)
            np.testing.assert_allclose(_probs(p), _probs(reference), atol=1e-5, err_msg=f"{kind} of {source}")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert p.dicom is not None and p.dicom.sop_instance_uid == ds.SOPInstanceUID, kind
            assert p.dicom.study_instance_uid == ds.StudyInstanceUID
            assert p.to_dict()["dicom"] == {"sop_instance_uid": ds.SOPInstanceUID, "study_instance_uid": ds.StudyInstanceUID}
        by_bytes = predictor.predict_one(variants["jpeg2000_lossless"].read_bytes())  # as a service receives it
        np.testing.assert_allclose(_probs(by_bytes), _probs(reference), atol=1e-5)
        assert by_bytes.dicom is not None and by_bytes.source is None


def test_predictor_uids_strict_and_failures(tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path: Path) -> None:
    png = sorted(synthetic_dir.rglob("*.png"))[0]
    pixels = np.asarray(Image.open(png).convert("L"))
    dx = write_dx(tmp_path / "dx.dcm", pixels)
    ct = write_dx(tmp_path / "ct.dcm", pixels, Modality="CT")
    with Predictor.from_path(tiny_fp32_onnx, device="cpu") as predictor:
        from_png, from_dx = predictor.predict([png, dx])
        assert from_png.dicom is None and from_png.to_dict()["dicom"] is None
        np.testing.assert_allclose(_probs(from_dx), _probs(from_png), atol=1e-5)
        with pytest.warns(DicomWarning, match="modality 'CT'"):
            assert predictor.predict_one(ct).dicom is not None
    with Predictor.from_path(tiny_fp32_onnx, device="cpu", strict_dicom=True) as strict:
        ok, refused = strict.predict([dx, ct], errors="return")
        assert ok.ok and not refused.ok and "--strict-dicom" in refused.reason


def test_no_patient_data_in_any_output(tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path: Path) -> None:
    """Every output of check, the Predictor, its failures and warnings: greps for the patient's name, ID, birth date."""
    from dacovid_export.cli.main import cli
    from tests.helpers.cli import invoke

    images = tmp_path / "dicoms"
    for png in sorted(synthetic_dir.rglob("*.png"))[::4]:
        folder = images / png.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        write_dx(folder / f"{png.stem}.dcm", np.asarray(Image.open(png).convert("L")))
    ct = write_dx(images / "covid" / "zz_ct.dcm", np.full((64, 64), 9, dtype=np.uint8), Modality="CT")
    report = tmp_path / "parity.json"
    result = invoke(cli, ["check", "--checkpoint", tiny_checkpoint, "--images", images, "--json", report, "--no-progress", tiny_fp32_onnx])
    assert result.exit_code in (0, 1), result.output
    warned = [line for line in result.output.splitlines() if "zz_ct.dcm" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: DICOM") and "modality 'CT'" in warned[0], result.output
    refused = invoke(cli, ["check", "--checkpoint", tiny_checkpoint, "--images", images, "--strict-dicom", "--no-progress", tiny_fp32_onnx])
    assert refused.exit_code == 2 and "--strict-dicom" in refused.output and "zz_ct.dcm" in refused.output
    outputs = [result.output, refused.output, report.read_text()]
    with Predictor.from_path(tiny_fp32_onnx, device="cpu") as predictor, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = predictor.predict(sorted(images.rglob("*.dcm")) + [ct.read_bytes()[:-50]], errors="return")
    outputs += [json.dumps(r.to_dict()) for r in results] + [str(w.message) for w in caught]
    assert not results[-1].ok and any(r.ok for r in results)
    for text in outputs:
        for secret in (PATIENT_NAME.split("^")[0], PATIENT_NAME.split("^")[2], PATIENT_ID, PATIENT_BIRTH_DATE):
            assert secret not in text, (secret, text[:500])

"""DICOM input: detection by content, the one decoding path (docs/dicom.md), every refusal, the metadata entry.

pydicom's own test files come from its installed wheel (``get_testdata_file`` on bundled names only: a
name it does not ship would be downloaded). The DICOMs the tests write are made from arrays here; the
real-image ones are in tests/dacovid_export/serve/test_predictor_dicom.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file  # noqa: E402  (pydicom is importorskip'ed by the helper)

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.dicom import (
    DicomWarning,
    file_looks_like_dicom,
    looks_like_dicom,
)
from dacovid_export.data.image_folder import find_images
from dacovid_export.data.preprocessing import (
    Preprocessing,
    dicom_identifiers,
    load_image,
    preprocess,
    to_float_gray,
)
from tests.helpers.dicom import (
    PATIENT_ID,
    PATIENT_NAME,
    dx_dataset,
    pydicom,
    recompress,
    write_dx,
)


def _bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom wheel")
    return str(path)


@pytest.fixture
def gray8() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(48, 64), dtype=np.uint8)
    img[:4] = 0  # a black band: padding in the padding test
    return img


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ detection


def test_detected_by_content_not_name(tmp_path: Path, gray8: np.ndarray) -> None:
    dcm = write_dx(tmp_path / "a.dcm", gray8)
    for name in ("film.png", "noextension"):
        other = tmp_path / name
        other.write_bytes(dcm.read_bytes())
        np.testing.assert_array_equal(to_float_gray(other), to_float_gray(dcm))
    assert file_looks_like_dicom(tmp_path / "noextension")
    assert not looks_like_dicom(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    # .dcm by name, and (round four) the extension-less one by content, as a PACS export names its files
    assert find_images(tmp_path) == [dcm, tmp_path / "film.png", tmp_path / "noextension"]


def test_bare_dataset_without_preamble_and_bytes(tmp_path: Path, gray8: np.ndarray) -> None:
    ds = dx_dataset(gray8)
    ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
    bare = tmp_path / "bare"
    pydicom.dcmwrite(bare, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert bare.read_bytes()[:2] == b"\x08\x00"  # no preamble, no file meta
    expected = gray8.astype(np.float32) / 255.0
    np.testing.assert_allclose(to_float_gray(bare), expected, atol=1e-7)
    full = write_dx(tmp_path / "full.dcm", gray8)
    np.testing.assert_allclose(to_float_gray(full.read_bytes()), expected, atol=1e-7)  # encoded bytes, as a service gets them
    image = load_image(full.read_bytes())
    assert dicom_identifiers(image).sop_instance_uid == str(pydicom.dcmread(full).SOPInstanceUID)


# ------------------------------------------------------------------ decoding steps


def test_monochrome1_is_inverted(tmp_path: Path, gray8: np.ndarray) -> None:
    m1 = write_dx(tmp_path / "m1.dcm", 255 - gray8, PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_allclose(to_float_gray(m1), gray8 / 255.0, atol=1e-6)


def test_full_stored_range_is_bits_stored_not_the_image(tmp_path: Path, gray8: np.ndarray) -> None:
    # 16-bit: p * 257 over 0..65535 is p / 255; 12 bits stored: the range is 0..4095, whatever the image holds
    sixteen = write_dx(tmp_path / "16.dcm", gray8.astype(np.uint16) * 257)
    np.testing.assert_allclose(to_float_gray(sixteen), gray8 / 255.0, atol=1e-6)
    twelve = gray8.astype(np.uint16) * 16
    junk = twelve | np.uint16(0xF000)  # garbage in the 4 unused high bits: BitsStored says ignore them
    path = write_dx(tmp_path / "12.dcm", junk, bits_stored=12)
    np.testing.assert_allclose(to_float_gray(path), twelve / 4095.0, atol=1e-6)


def test_rescale_and_window(tmp_path: Path, gray8: np.ndarray) -> None:
    # modality value 2 * (8p) - 0 = 16p; LINEAR window: (x - (c - 0.5)) / (w - 1) + 0.5 = 16p / 4080 = p / 255
    stored = gray8.astype(np.uint16) * 8
    kwargs = dict(RescaleSlope=2, RescaleIntercept=0, WindowCenter=2040.5, WindowWidth=4081)
    path = write_dx(tmp_path / "w.dcm", stored, bits_stored=12, **kwargs)
    np.testing.assert_allclose(to_float_gray(path), gray8 / 255.0, atol=1e-6)
    # LINEAR_EXACT: (x - c) / w + 0.5; with a negative intercept
    path = write_dx(tmp_path / "we.dcm", stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000,
                    WindowCenter=1040, WindowWidth=4080, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(to_float_gray(path), gray8 / 255.0, atol=1e-6)
    # the first of several windows; full_range ignores them: 16p over the rescaled 12-bit range 0..8190
    path = write_dx(tmp_path / "w2.dcm", stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=0,
                    WindowCenter=[2040.5, 100], WindowWidth=[4081, 10])
    np.testing.assert_allclose(to_float_gray(path), gray8 / 255.0, atol=1e-6)
    np.testing.assert_allclose(to_float_gray(path, dicom_voi="full_range"), stored * 2 / 8190.0, atol=1e-6)


def test_voi_lut_sequence(tmp_path: Path, gray8: np.ndarray) -> None:
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.LUTData = np.arange(255, -1, -1, dtype=np.uint16).tobytes()  # inverting: the LUT, not the range, decides
    ds = dx_dataset(gray8, WindowCenter=10, WindowWidth=5)  # the LUT wins over the window
    ds.VOILUTSequence = [lut]
    ds.save_as(tmp_path / "lut.dcm", enforce_file_format=True)
    np.testing.assert_allclose(to_float_gray(tmp_path / "lut.dcm"), (255 - gray8) / 255.0, atol=1e-6)


def test_padding_is_black(tmp_path: Path, gray8: np.ndarray) -> None:
    stored = gray8.astype(np.uint16) * 16
    stored[gray8 == 0] = 4095  # padding marked with the brightest value
    path = write_dx(tmp_path / "pad.dcm", stored, bits_stored=12, PixelPaddingValue=4095,
                    PhotometricInterpretation="MONOCHROME1")
    got = to_float_gray(path)
    assert np.all(got[gray8 == 0] == 0.0)  # not inverted to white: outside the film is black
    np.testing.assert_allclose(got[gray8 != 0], 1.0 - stored[gray8 != 0] / 4095.0, atol=1e-6)


def test_colour_secondary_captures_become_luminance() -> None:
    # uncompressed YBR_FULL_422 and its RGB original; 8-bit colour is an RGB picture like any colour file
    ybr = _quiet(load_image, _bundled("SC_ybr_full_422_uncompressed.dcm"))
    assert ybr.mode == "RGB"
    rgb16 = _quiet(to_float_gray, _bundled("SC_rgb_rle_16bit.dcm"))
    rgb8 = _quiet(to_float_gray, _bundled("SC_rgb_rle.dcm"))
    np.testing.assert_allclose(rgb16, rgb8, atol=2 / 255)  # the same picture at 16 and 8 bits
    palette = _quiet(to_float_gray, _bundled("examples_palette.dcm"))
    assert palette.shape == (350, 800) and 0.0 <= palette.min() < palette.max() <= 1.0


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm", "MR_small_padded.dcm"])
def test_bundled_encodings_decode_alike(name: str) -> None:
    reference = _quiet(to_float_gray, _bundled("MR_small.dcm"))
    np.testing.assert_allclose(_quiet(to_float_gray, _bundled(name)), reference, atol=1e-6)


def test_bundled_jpeg_baseline_and_jpeg2000_decode() -> None:
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm"):
        gray = _quiet(to_float_gray, _bundled(name))
        assert gray.ndim == 2 and np.isfinite(gray).all() and 0.0 <= gray.min() <= gray.max() <= 1.0


def test_lossless_encodings_of_a_written_file(tmp_path: Path, gray8: np.ndarray) -> None:
    plain = write_dx(tmp_path / "plain.dcm", gray8.astype(np.uint16) * 16, bits_stored=12)
    for syntax in ("jpeg_lossless", "jpeg2000_lossless"):
        encoded = recompress(plain, tmp_path / f"{syntax}.dcm", syntax)
        assert pydicom.dcmread(encoded).file_meta.TransferSyntaxUID.is_compressed
        np.testing.assert_array_equal(to_float_gray(encoded), to_float_gray(plain))


# ------------------------------------------------------------------ modality and body part


def test_other_modality_warns_and_strict_refuses(tmp_path: Path, gray8: np.ndarray) -> None:
    ct = _bundled("CT_small.dcm")
    with pytest.warns(DicomWarning, match="modality 'CT' is not CR or DX"):
        to_float_gray(ct)
    with pytest.raises(UserInputError, match="modality 'CT' is not CR or DX.*--strict-dicom"):
        to_float_gray(ct, strict_dicom=True)
    knee = write_dx(tmp_path / "knee.dcm", gray8, BodyPartExamined="KNEE")
    with pytest.raises(UserInputError, match="body part 'KNEE' is not the chest"):
        preprocess(knee, Preprocessing(image_size=32), strict_dicom=True)
    chest = write_dx(tmp_path / "chest.dcm", gray8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomWarning)
        to_float_gray(chest, strict_dicom=True)  # a chest DX: no warning, no refusal


# ------------------------------------------------------------------ refusals (the table in docs/dicom.md)


def _refused(source: object, *fragments: str, strict: bool = False) -> str:
    with pytest.raises(UserInputError) as info:
        _quiet(to_float_gray, source, strict_dicom=strict)
    text = str(info.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_refuses_non_image_sop_classes() -> None:
    _refused(_bundled("test-SR.dcm"), "'Comprehensive SR Storage'", "not an image")
    _refused(_bundled("rtplan.dcm"), "'RT Plan Storage'", "not an image")
    _refused(_bundled("waveform_ecg.dcm"), "Waveform", "not an image")


def test_refuses_no_pixel_data(tmp_path: Path, gray8: np.ndarray) -> None:
    ds = dx_dataset(gray8)
    del ds.PixelData
    ds.save_as(tmp_path / "header.dcm", enforce_file_format=True)
    _refused(tmp_path / "header.dcm", "has no pixel data", "Digital X-Ray")


def test_refuses_multi_frame(tmp_path: Path, gray8: np.ndarray) -> None:
    _refused(_bundled("SC_rgb_rle_2frame.dcm"), "has 2 frames", "one radiograph per file")
    two = np.concatenate([gray8, gray8])
    path = write_dx(tmp_path / "two.dcm", two, NumberOfFrames=2, Rows=gray8.shape[0])
    _refused(path, "has 2 frames")


def test_refuses_unsupported_transfer_syntax(tmp_path: Path, gray8: np.ndarray) -> None:
    ds = dx_dataset(gray8)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no still-image decoder exists
    ds.PixelData = pydicom.encaps.encapsulate([gray8.tobytes()])
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=True)
    _refused(tmp_path / "mpeg.dcm", "'1.2.840.10008.1.2.4.100'", "has no pixel decoder", "export it uncompressed")


def test_refuses_a_missing_decoder_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    _refused(_bundled("MR_small_RLE.dcm"), "'RLE Lossless'", "pip install 'dacovid-export[dicom]'")


def test_refuses_12_bit_jpeg_extended_naming_libjpeg() -> None:
    try:
        import libjpeg  # noqa: F401

        pytest.skip("pylibjpeg-libjpeg is installed here: it decodes 12-bit JPEG Extended")
    except ImportError:
        pass
    _refused(_bundled("JPGExtended.dcm"), "JPEG Extended", "pylibjpeg-libjpeg")


def test_refuses_truncated_files(tmp_path: Path, gray8: np.ndarray) -> None:
    _refused(_bundled("MR_truncated.dcm"), "truncated or corrupt", "export it again")
    whole = write_dx(tmp_path / "whole.dcm", gray8).read_bytes()
    for cut in (len(whole) - 100, 200):  # in the pixel data, in the header
        (tmp_path / "cut.dcm").write_bytes(whole[:cut])
        _refused(tmp_path / "cut.dcm", "truncated or corrupt")
        _refused(whole[:cut], "truncated or corrupt", "image of")  # as bytes too


def test_refuses_absurd_sizes_from_the_header(tmp_path: Path, gray8: np.ndarray) -> None:
    from PIL import Image

    huge = dx_dataset(gray8)
    huge.Rows = huge.Columns = 30000  # 900 Mpx claimed, 3 kB present: refused before any decoding
    huge.save_as(tmp_path / "huge.dcm", enforce_file_format=True)
    _refused(tmp_path / "huge.dcm", "too large to decode safely", "30000x30000", str(Image.MAX_IMAGE_PIXELS))
    strip = write_dx(tmp_path / "strip.dcm", np.zeros((4, 200), dtype=np.uint8))
    _refused(strip, "200x4 pixels", "50:1", "crop it")


def test_refuses_a_broken_window(tmp_path: Path, gray8: np.ndarray) -> None:
    path = write_dx(tmp_path / "w0.dcm", gray8, WindowCenter=100, WindowWidth=0)
    _refused(path, "WindowWidth 0", "dicom_voi='full_range'")
    assert to_float_gray(path, dicom_voi="full_range").shape == gray8.shape


def test_refusals_never_name_the_patient(tmp_path: Path, gray8: np.ndarray) -> None:
    texts = []
    ds = dx_dataset(gray8, Modality="CT")
    ds.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    texts.append(_refused(tmp_path / "ct.dcm", strict=True))
    with pytest.warns(DicomWarning) as caught:
        to_float_gray(tmp_path / "ct.dcm")
    texts.extend(str(w.message) for w in caught)
    whole = (tmp_path / "ct.dcm").read_bytes()
    texts.append(_refused(whole[: len(whole) - 10]))
    for text in texts:
        assert PATIENT_NAME.split("^")[0] not in text and PATIENT_ID not in text, text


# ------------------------------------------------------------------ metadata


def test_preprocessing_metadata_records_the_decoding() -> None:
    spec = Preprocessing(image_size=64)
    entry = spec.to_dict()["dicom"]
    assert entry["voi"] == "window" and entry["monochrome1"] == "inverted" and entry["version"] == 1
    old = {k: v for k, v in spec.to_dict().items() if k != "dicom"}  # an artifact from before DICOM input
    assert Preprocessing.from_dict(old) == spec
    full = Preprocessing(image_size=64, dicom_voi="full_range")
    assert Preprocessing.from_dict(full.to_dict()) == full != spec
    with pytest.raises(UserInputError, match="dicom_voi='auto'"):
        Preprocessing(image_size=64, dicom_voi="auto")  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="'dicom' entry .* is malformed"):
        Preprocessing.from_dict({**old, "dicom": {"voi": "bogus"}})
    with pytest.raises(UserInputError, match="decoding version 2.*upgrade"):
        Preprocessing.from_dict({**old, "dicom": {"voi": "window", "version": 2}})


def test_preprocess_follows_the_spec(tmp_path: Path, gray8: np.ndarray) -> None:
    stored = gray8.astype(np.uint16) * 8
    path = write_dx(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter=100, WindowWidth=50)
    a = preprocess(path, Preprocessing(image_size=32))
    b = preprocess(path, Preprocessing(image_size=32, dicom_voi="full_range"))
    assert not np.allclose(a, b)
    np.testing.assert_allclose(b, preprocess(stored.astype(np.float32) / 4095.0, Preprocessing(image_size=32)), atol=1e-5)


def test_a_non_dicom_that_starts_like_a_bare_dataset_goes_to_pillow(tmp_path: Path) -> None:
    # a TGA's first bytes (id length 2, no colour map, ...) can read as the tag (0002,xxxx) of a bare dataset
    tga = tmp_path / "x.tga"
    img = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    img.save(tga, id_section=b"ab")
    head = tga.read_bytes()[:132]
    assert looks_like_dicom(head), head[:8]  # the premise: the heuristic says "maybe DICOM"
    np.testing.assert_allclose(to_float_gray(tga), np.asarray(img) / 255.0, atol=1e-7)
    np.testing.assert_allclose(to_float_gray(tga.read_bytes()), np.asarray(img) / 255.0, atol=1e-7)
    with pytest.raises(UserInputError, match="DICOM image of 23 bytes has no pixel data"):
        to_float_gray(b"\x08\x00\x16\x00UI\x40\x00" + b"1.2" * 5)  # neither: the DICOM reason is the one given

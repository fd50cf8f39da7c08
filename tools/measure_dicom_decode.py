"""Manual measurement of DICOM decoding time (not collected by pytest).

    nice python tools/measure_dicom_decode.py IMAGE [--size 2048] [--repeat 5]

Writes (into a temporary folder) a 12-bit DX DICOM of IMAGE resized to SIZE x SIZE, uncompressed, JPEG
lossless (GDCM) and JPEG 2000 lossless (OpenJPEG), and times, per encoding, ``load_image`` + ``to_float_gray``
(the DICOM decoding path) and the whole ``preprocess`` at 224 (median of REPEAT after one warm-up).
Prints one JSON document; compare with the model's CPU latency (README, "Measured figures").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dacovid_export.data.preprocessing import (
    Preprocessing,
    load_image,
    preprocess,
    to_float_gray,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.dicom import recompress, write_dx  # noqa: E402


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with Image.open(args.image) as img:
        gray = img.convert("L").resize((args.size, args.size), Image.Resampling.BICUBIC)
    pixels = (np.asarray(gray).astype(np.uint16) * 16)  # 12 bits stored
    spec = Preprocessing(image_size=224)
    out: dict[str, object] = {"image": str(args.image), "size": args.size, "repeat": args.repeat, "ms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = write_dx(folder / "plain.dcm", pixels, bits_stored=12, RescaleSlope=1, RescaleIntercept=0,
                         WindowCenter=2048, WindowWidth=4096)
        files = {
            "uncompressed": plain,
            "jpeg_lossless": recompress(plain, folder / "jpegll.dcm", "jpeg_lossless"),
            "jpeg2000_lossless": recompress(plain, folder / "j2k.dcm", "jpeg2000_lossless"),
        }
        png = folder / "same.png"
        Image.fromarray(pixels).save(png)  # a 16-bit PNG of the same pixels, for scale
        files_all = {**files, "png_16bit": png}
        for name, path in files_all.items():
            out["ms"][name] = {  # type: ignore[index]
                "bytes": path.stat().st_size,
                "decode_to_gray": _median_ms(lambda p=path: to_float_gray(load_image(p)), args.repeat),
                "preprocess_224": _median_ms(lambda p=path: preprocess(p, spec), args.repeat),
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Manual measurement of the precision step on real images (not collected by pytest).

    nice python tools/measure_precision.py FP32.onnx IMAGE_FOLDER OUT_DIR [--calib 64 --calib 128]

Times convert_fp16 (with and without calibration data) and quantize_int8 (entropy and
max, and a cache hit), lists the nodes that stayed FP32 and the model sizes, compares
FP16/INT8 logits with FP32 in ONNX Runtime (CPU) on held-out images (images not in any
calibration sample), and measures ORT CPU latency at batch 1 (median of 5 after a warm-up).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from dacovid_export.calibration import convert_fp16, load_calibration_set, quantize_int8
from dacovid_export.data.image_folder import scan_class_folders
from dacovid_export.data.preprocessing import Preprocessing, preprocess_batch


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = _session(path)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 4]})[0] for i in range(0, len(x), 4)])


def _latency_ms(path: Path, x1: np.ndarray, runs: int = 5) -> float:
    session = _session(path)
    name = session.get_inputs()[0].name
    session.run(None, {name: x1})  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x1})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--calib", type=int, action="append")
    parser.add_argument("--held-out", type=int, default=32)
    args = parser.parse_args()
    sizes = args.calib or [64]
    args.out.mkdir(parents=True, exist_ok=True)
    spec = Preprocessing(image_size=args.image_size)
    report: dict = {"source": str(args.source), "source_mb": args.source.stat().st_size / 1e6, "runs": []}

    calib_sets = {n: load_calibration_set(args.images, spec, size=n, seed=0) for n in sizes}
    used = {p for c in calib_sets.values() for p in c.paths}
    rng = np.random.default_rng(123)
    held_out = []
    classes = scan_class_folders(args.images)
    per_class = max(1, args.held_out // len(classes))
    for name in sorted(classes):
        rest = [p for p in classes[name] if p not in used]
        held_out += [rest[int(i)] for i in sorted(rng.choice(len(rest), size=min(per_class, len(rest)), replace=False))]
    x = preprocess_batch(held_out, spec)
    reference = _logits(args.source, x)
    report["held_out_images"] = len(held_out)
    report["fp32_logit_range"] = [float(reference.min()), float(reference.max())]
    report["fp32_top1_histogram"] = np.bincount(reference.argmax(1), minlength=reference.shape[1]).tolist()

    def compare(path: Path) -> dict:
        logits = _logits(path, x)
        return {
            "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(logits - reference).max()),
            "mean_abs_logit_diff": float(np.abs(logits - reference).mean()),
        }

    def record(label: str, path: Path, result) -> None:
        entry = {
            "label": label,
            "seconds": round(result.seconds, 1),
            "cache_hit": result.cache_hit,
            "size_mb": round(path.stat().st_size / 1e6, 1),
            "fp32_nodes": list(result.fp32_nodes),
            **compare(path),
        }
        for key in ("range_check_images", "fp32_by_autocast_rules", "excluded_nodes", "qdq"):
            if key in result.details:
                entry[key] = result.details[key]
        report["runs"].append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)

    fp16_plain = args.out / "model.fp16.onnx"
    record("fp16, no calibration data", fp16_plain, convert_fp16(args.source, fp16_plain))
    first = calib_sets[sizes[0]]
    fp16_cal = args.out / "model.fp16.cal.onnx"
    record(f"fp16, calibration ({len(first)} images)", fp16_cal, convert_fp16(args.source, fp16_cal, calibration=first.array))

    cache = args.out / "cache"
    int8_paths = {}
    for n, calib in calib_sets.items():
        for method in ("entropy", "max"):
            path = args.out / f"model.int8.{method}.{n}.onnx"
            record(f"int8 {method}, {len(calib)} images", path, quantize_int8(args.source, path, calibration=calib, method=method, cache_dir=cache))
            int8_paths[(method, n)] = path
    path = args.out / "model.int8.hit.onnx"
    record(f"int8 entropy, {len(first)} images, second call", path, quantize_int8(args.source, path, calibration=first, cache_dir=cache))

    x1 = np.ascontiguousarray(x[:1])
    report["latency_ms_batch1_median5"] = {
        "fp32": _latency_ms(args.source, x1),
        "fp16": _latency_ms(fp16_cal, x1),
        "int8_entropy": _latency_ms(int8_paths[("entropy", sizes[0])], x1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

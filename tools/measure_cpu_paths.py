"""Manual measurement of issue 17's CPU targets (not collected by pytest): every CPU path, interleaved, in one run.

    nice python tools/measure_cpu_paths.py MODEL.onnx [--int8 MODEL.int8.onnx] [--rounds 8] [--threads 2]

Each round times, at batch 1, one after the other: a 2048^3 FP32 GEMM in torch (the
machine's FP32 limit), ONNX Runtime FP32, OpenVINO FP32 (``f32`` set), OpenVINO BF16
(CPUs with BF16 only) and OpenVINO on the INT8 model if given. Interleaving puts every
path under the same load, so the ratios hold on a shared machine even when the times do
not. Prints medians, GFLOP/s (the model's GFLOPs from ``bench.cost``), the fraction of the
in-run GEMM, ratios against the default FP32 path (the one ``auto`` chooses, printed with
its reason), the issue's targets met or not, and the load average before and after.
One JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def _timer(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--int8")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from dacovid_export.backends.cpu_choice import choose_cpu_runtime
    from dacovid_export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dacovid_export.backends.openvino_backend import OpenVINOBackend
    from dacovid_export.bench.cost import artifact_cost
    from dacovid_export.bench.gemm import GEMM_SIZE
    from dacovid_export.core.openvino_model import cpu_supports_bf16
    from dacovid_export.data.synthetic import synthetic_batch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    cost = artifact_cost(args.model).cost
    gflops = cost.gflops if cost else None
    choice = choose_cpu_runtime(args.model, threads=args.threads)
    print(choice.sentence(os.path.basename(args.model)), file=sys.stderr)

    paths = {
        "onnxruntime fp32": OnnxRuntimeBackend(args.model, device="cpu", intra_op_threads=args.threads),
        "openvino fp32": OpenVINOBackend(args.model, inference_precision="fp32", threads=args.threads),
    }
    if cpu_supports_bf16():
        paths["openvino bf16"] = OpenVINOBackend(args.model, inference_precision="bf16", threads=args.threads)
    if args.int8:
        paths["openvino int8"] = OpenVINOBackend(args.int8, inference_precision="fp32", threads=args.threads)
    x = synthetic_batch(1, paths["onnxruntime fp32"].info.image_size, seed=0)
    a = torch.randn(GEMM_SIZE, GEMM_SIZE)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE)
    out = torch.empty(GEMM_SIZE, GEMM_SIZE)
    gemm = lambda: torch.matmul(a, b, out=out)
    gemm()
    for backend in paths.values():
        backend.run(x)  # warm-up
    times: dict[str, list[float]] = {"gemm": [], **{k: [] for k in paths}}
    for _ in range(args.rounds):
        times["gemm"].append(_timer(gemm))
        for name, backend in paths.items():
            times[name].append(_timer(lambda backend=backend: backend.run(x)))
    ref = paths["onnxruntime fp32"].run(x)
    diffs = {name: float(np.max(np.abs(backend.run(x) - ref))) for name, backend in paths.items()}
    for backend in paths.values():
        backend.close()

    gemm_rate = 2 * GEMM_SIZE**3 / (statistics.median(times["gemm"]) / 1000) / 1e9
    default = "openvino fp32" if choice.backend == "openvino" else "onnxruntime fp32"
    rows = {}
    for name in paths:
        p50 = statistics.median(times[name])
        rate = gflops / (p50 / 1000) if gflops else None
        rows[name] = {
            "p50_ms": round(p50, 2),
            "min_ms": round(min(times[name]), 2),
            "max_ms": round(max(times[name]), 2),
            "gflops_per_s": None if rate is None else round(rate, 1),
            "x_fp32_gemm": None if rate is None else round(rate / gemm_rate, 3),
            "vs_default_fp32": round(p50 / statistics.median(times[default]), 3),
            "max_abs_dlogit_vs_ort_fp32": diffs[name],
        }
    default_fraction = rows[default]["x_fp32_gemm"]
    targets = {
        "default FP32 >= 0.9x in-run FP32 GEMM": None if default_fraction is None else default_fraction >= 0.9,
        "BF16 <= 0.15x default FP32 latency": rows["openvino bf16"]["vs_default_fp32"] <= 0.15 if "openvino bf16" in rows else None,
        # where ONNX Runtime is the faster FP32 path in this run, auto must not have left it
        "auto keeps ONNX Runtime where it is faster": not (
            rows["onnxruntime fp32"]["p50_ms"] <= rows["openvino fp32"]["p50_ms"] and choice.backend == "openvino"
        ),
    }
    report = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "model": args.model,
        "gflops_per_image": gflops,
        "threads": args.threads,
        "rounds": args.rounds,
        "gemm": {"size": GEMM_SIZE, "p50_ms": round(statistics.median(times["gemm"]), 2), "gflops_per_s": round(gemm_rate, 1)},
        "auto_choice": choice.to_dict(),
        "default_fp32_path": default,
        "paths": rows,
        "targets": targets,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pipeline's headline figures: median-latency ratios between backends and precisions, with their targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from dacovid_export.backends.registry import (
    BACKEND_FOR_KIND,
    BF16_BACKEND,
    CPU_INT8_BACKEND,
    KINDS_OF_BACKEND,
    backend_label,
)
from dacovid_export.bench.records import BenchRecord, BenchResult
from dacovid_export.bench.report import CPU_INT8_TARGET
from dacovid_export.calibration.precisions import precision_names

__all__ = ["BF16_VS_FP32_TARGET", "ORT_VS_TORCH_TARGET", "Headline", "headline_ratios"]

ORT_VS_TORCH_TARGET = 0.70  # ONNX Runtime FP32 / PyTorch eager FP32, CPU, batch 1 (a prototype measured 0.68)
BF16_VS_FP32_TARGET = 0.15  # OpenVINO BF16 / the default FP32 CPU path, batch 1 (issue 17; AMX measured 0.16-0.18)


@dataclasses.dataclass(frozen=True)
class Headline:
    """One comparison: ``p50_ms / baseline_p50_ms`` at one device, timing and batch, and its target if it has one."""

    comparison: str
    device: str
    timing: str
    batch: int
    p50_ms: float
    baseline_p50_ms: float
    ratio: float
    target: float | None
    meets_target: bool | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def text(self) -> str:
        target = "" if self.target is None else f" (target <= {self.target:.2f}: {'met' if self.meets_target else 'NOT met'})"
        return (
            f"{self.comparison}, {self.device} batch {self.batch} [{self.timing}]: {self.p50_ms:.1f} / "
            f"{self.baseline_p50_ms:.1f} ms = {self.ratio:.2f}{target}"
        )


def _find(records: Sequence[BenchRecord], backend: str, precision: str, variant: str | None = None) -> BenchRecord | None:
    """The first record of ``backend`` at ``precision`` (and of ``variant``, when given)."""
    for r in records:
        if r.backend == backend and r.precision == precision and (variant is None or r.variant == variant):
            return r
    return None


def headline_ratios(bench: BenchResult) -> tuple[Headline, ...]:
    """Median-latency ratios: ORT FP32 vs PyTorch eager, FP16/INT8 vs FP32, per backend, batch and timing.

    On the CPU, INT8 is also reported on OpenVINO, and the INT8 headline uses the faster of the two runtimes.
    """
    records = bench.records
    out: list[Headline] = []
    torch_name, ort_name, trt_name = (BACKEND_FOR_KIND[k] for k in ("checkpoint", "onnx", "engine"))
    ort_label, trt_label = backend_label(ort_name), backend_label(trt_name)
    torch_label = f"{backend_label(torch_name)} eager"
    int8_label, bf16_label = backend_label(CPU_INT8_BACKEND), backend_label(BF16_BACKEND)
    keys = sorted({(r.device, r.timing, r.batch) for r in records})
    for device, timing, batch in keys:
        same = [r for r in records if (r.device, r.timing, r.batch) == (device, timing, batch)]
        torch_fp32 = _find(same, backend=torch_name, precision="fp32", variant="eager")
        ort = {p: _find(same, backend=ort_name, precision=p) for p in precision_names()}
        trt = {p: _find(same, backend=trt_name, precision=p) for p in precision_names()}
        ov_int8 = _find(same, backend=CPU_INT8_BACKEND, precision="int8")
        ov_bf16 = _find(same, backend=BF16_BACKEND, precision="bf16")
        # the FP32 baseline is the runtime `auto` ran FP32 on (on a CPU where OpenVINO f32 is faster and faithful,
        # OpenVINO: backends.cpu_choice); named in every label that uses it
        fp32_name = ort_label
        if ort["fp32"] is None and device == "cpu":
            other = next((r for r in same if KINDS_OF_BACKEND.get(r.backend) == "onnx" and r.precision == "fp32"), None)
            if other is not None:
                ort["fp32"], fp32_name = other, backend_label(other.backend)
        # the CPU headline uses the faster INT8 runtime: OpenVINO runs the signed Q/DQ model as INT8, ORT does not
        int8_cpu = [r for r in (ort["int8"], ov_int8) if r is not None]
        best_int8 = min(int8_cpu, key=lambda r: r.p50_ms) if int8_cpu else None
        pairs: list[tuple[str, BenchRecord | None, BenchRecord | None, float | None]] = [
            (f"{fp32_name} FP32 vs {torch_label} FP32", ort["fp32"], torch_fp32, ORT_VS_TORCH_TARGET if device == "cpu" else None),
            (f"{ort_label} FP16 vs {fp32_name} FP32", ort["fp16"], ort["fp32"], None),
            (f"{ort_label} INT8 vs {fp32_name} FP32", ort["int8"], ort["fp32"], None),
            (f"{int8_label} INT8 vs {fp32_name} FP32", ov_int8, ort["fp32"], None),
            (
                f"CPU INT8 (fastest: {best_int8.backend if best_int8 else '-'}) vs {fp32_name} FP32",
                best_int8 if device == "cpu" else None,
                ort["fp32"],
                CPU_INT8_TARGET,
            ),
            (f"{bf16_label} BF16 vs {fp32_name} FP32", ov_bf16 if device == "cpu" else None, ort["fp32"], BF16_VS_FP32_TARGET),
            (f"{trt_label} FP32 vs {torch_label} FP32", trt["fp32"], torch_fp32, None),
            (f"{trt_label} FP16 vs {trt_label} FP32", trt["fp16"], trt["fp32"], None),
            (f"{trt_label} INT8 vs {trt_label} FP32", trt["int8"], trt["fp32"], None),
        ]
        for label, num, den, target in pairs:
            if num is None or den is None or den.p50_ms <= 0:
                continue
            ratio = num.p50_ms / den.p50_ms
            out.append(
                Headline(
                    comparison=label,
                    device=device,
                    timing=timing,
                    batch=batch,
                    p50_ms=round(num.p50_ms, 3),
                    baseline_p50_ms=round(den.p50_ms, 3),
                    ratio=round(ratio, 3),
                    target=target,
                    meets_target=None if target is None else ratio <= target,
                )
            )
    return tuple(out)

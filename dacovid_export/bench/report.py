"""Bench results as a markdown table, CSV, JSON and a latency-versus-batch plot (all files written atomically)."""

from __future__ import annotations

import csv
import io
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dacovid_export.backends.registry import BACKEND_FOR_KIND, BACKENDS, KINDS_OF_BACKEND
from dacovid_export.bench.environment import format_environment
from dacovid_export.bench.records import RECORD_KEYS, BenchRecord, BenchResult
from dacovid_export.core.deps import require
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import atomic_path, atomic_write_json, atomic_write_text

__all__ = [
    "STATISTICS_NOTE",
    "baseline_ratios",
    "CPU_INT8_TARGET",
    "cpu_int8_summary",
    "format_records_table",
    "format_markdown",
    "write_csv",
    "write_json",
    "plot_latency",
    "save_bench_result",
]

STATISTICS_NOTE = (
    "Latency in ms per batch. p50 = median; p90/p95/p99 = nearest-rank percentiles (trtexec's convention: "
    "the sample of rank ceil(p/100*n)), so with few iterations they equal the maximum. "
    "Throughput = batch x 1000 / mean. GPU series use CUDA events: `compute` = network only (input already on the "
    "device), `end_to_end` = host-to-device copy + compute + device-to-host copy. On the CPU compute equals "
    "end-to-end and one series (`end_to_end`, perf_counter) is recorded."
)


# issue 9's target: INT8 on the best CPU backend at most this share of ONNX Runtime FP32's median latency
CPU_INT8_TARGET = 0.35


def cpu_int8_summary(records: Sequence[BenchRecord]) -> list[dict[str, Any]]:
    """Per CPU batch size: ONNX Runtime FP32, each INT8 backend, and the fastest INT8 as a share of ORT FP32."""
    out: list[dict[str, Any]] = []
    cpu = [r for r in records if r.device == "cpu"]
    for batch, size in sorted({(r.batch, r.image_size) for r in cpu}):
        same = [r for r in cpu if (r.batch, r.image_size) == (batch, size)]
        fp32 = next((r for r in same if r.backend == BACKEND_FOR_KIND["onnx"] and r.precision == "fp32"), None)
        int8 = {r.backend: r for r in same if r.precision == "int8" and KINDS_OF_BACKEND.get(r.backend) == "onnx"}
        if fp32 is None or not int8 or fp32.p50_ms <= 0:
            continue
        best = min(int8.values(), key=lambda r: r.p50_ms)
        ratio = best.p50_ms / fp32.p50_ms
        out.append(
            {
                "batch": batch,
                "image_size": size,
                "onnxruntime_fp32_p50_ms": fp32.p50_ms,
                "int8_p50_ms": {name: r.p50_ms for name, r in int8.items()},
                "best_int8_backend": best.backend,
                "ratio": ratio,
                "target": CPU_INT8_TARGET,
                "meets_target": ratio <= CPU_INT8_TARGET,
            }
        )
    return out


def _cpu_int8_lines(records: Sequence[BenchRecord]) -> list[str]:
    lines = []
    for row in cpu_int8_summary(records):
        each = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(row["int8_p50_ms"].items()))
        lines.append(
            f"- CPU INT8, batch {row['batch']} at {row['image_size']}x{row['image_size']}: {each}; ONNX Runtime FP32 "
            f"{row['onnxruntime_fp32_p50_ms']:.1f} ms; best ({row['best_int8_backend']}) = {row['ratio']:.2f}x ORT FP32 "
            f"(target <= {row['target']:.2f}: {'met' if row['meets_target'] else 'NOT met'})"
        )
    return lines


def _backend_notes(records: Sequence[BenchRecord]) -> list[str]:
    """The notes of the backends (:attr:`Backend.bench_note`) that ran at least one row, in table order."""
    present = {r.backend for r in records}
    return [e.cls.bench_note for name, e in BACKENDS.items() if name in present and e.cls.bench_note]


def _baseline_key(r: BenchRecord) -> tuple[Any, ...]:
    return (r.device, r.timing, r.batch, r.image_size)


def baseline_ratios(records: Sequence[BenchRecord]) -> list[float | None]:
    """Each record's median latency divided by PyTorch eager FP32's at the same device, timing, batch and size.

    ``None`` where there is no such baseline record (no checkpoint was timed).
    """
    baselines: dict[tuple[Any, ...], float] = {}
    for r in records:
        if r.backend == BACKEND_FOR_KIND["checkpoint"] and r.precision == "fp32" and r.variant == "eager":
            baselines.setdefault(_baseline_key(r), r.p50_ms)
    out: list[float | None] = []
    for r in records:
        base = baselines.get(_baseline_key(r))
        out.append(r.p50_ms / base if base else None)
    return out


def format_records_table(records: Sequence[BenchRecord]) -> str:
    """The markdown latency table, one row per record."""
    ratios = baseline_ratios(records)
    show_ratio = any(x is not None for x in ratios)
    header = [
        "artifact", "backend", "precision", "variant", "device", "timing", "batch",
        "mean", "p50", "p90", "p95", "p99", "min", "max", "img/s",
    ]
    if show_ratio:
        header.append("p50 vs torch eager fp32")
    show_rate = any(r.gflops_per_s is not None for r in records)
    if show_rate:
        header += ["GFLOP/s", "x FP32 GEMM"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 6 else "---:" for i in range(len(header))) + "|"]
    for r, ratio in zip(records, ratios):
        cells = [
            r.artifact, r.backend, r.precision, r.variant, r.device, r.timing, str(r.batch),
            *(f"{getattr(r, k):.2f}" for k in ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms")),
            f"{r.throughput_ips:.1f}",
        ]
        if show_ratio:
            cells.append("-" if ratio is None else f"{ratio:.2f}")
        if show_rate:
            cells.append("-" if r.gflops_per_s is None else f"{r.gflops_per_s:.1f}")
            cells.append("-" if r.gemm_fraction is None else f"{r.gemm_fraction:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run_line(result: BenchResult) -> str:
    c = result.config
    amount = f"{c.effective_iterations} iterations" if c.effective_iterations is not None else f"{c.duration_s:g} s"
    return (
        f"{amount} per series after {c.warmup} warm-up runs; batch sizes {', '.join(map(str, c.batch_sizes))}; "
        f"inputs: seeded synthetic images (seed {c.seed})."
    )


def _cpu_rate_lines(result: BenchResult) -> list[str]:
    """The in-run FP32 GEMM (the machine's FP32 limit), what each CPU row's GFLOP/s means, and auto's choices."""
    from dacovid_export.bench.gemm import GEMM_SIZE

    g = result.gemm_gflops
    load = result.environment.get("cpu", {}).get("load_average_1_5_15m") if isinstance(result.environment, Mapping) else None
    lines = [
        f"- FP32 GEMM {GEMM_SIZE}^3 (torch, {result.config.threads or 'default'} threads), measured before, between "
        f"and after the CPU series: {min(g):.1f}-{max(g):.1f} GFLOP/s (median {statistics.median(g):.1f}); "
        "each CPU row's GFLOP/s = the model's GFLOPs x batch / p50, and 'x FP32 GEMM' that rate over the mean of "
        "the GEMM runs either side of it (1.0x = this machine's FP32 limit)"
        + (f"; load average {'/'.join(str(x) for x in load)}" if load else ""),
    ]
    lines += [f"- {why}" for _, why in result.cpu_choices]
    return lines


def format_markdown(result: BenchResult, *, heading_level: int = 2) -> str:
    """Latency table, statistics conventions, environment block and (if computed) the cost tables."""
    h = "#" * heading_level
    int8_lines = _cpu_int8_lines(result.records)
    parts = [
        f"{h} Latency",
        "",
        format_records_table(result.records),
        "",
        *[f"- skipped {Path(path).name}: {reason}" for path, reason in result.skipped],
        *([""] if result.skipped else []),
        _run_line(result),
        STATISTICS_NOTE,
        *_backend_notes(result.records),
        *(["", *int8_lines] if int8_lines else []),
        *(["", *_cpu_rate_lines(result)] if result.gemm_gflops else []),
        "",
        f"{h} Environment",
        "",
        format_environment(result.environment),
    ]
    if result.served:
        parts += ["", f"{h} Served", "", *served_lines(result)]
    if result.artifact_costs or result.cost_table is not None:
        parts += ["", f"{h} Cost", ""]
        for ac in result.artifact_costs:
            if ac.cost is None:
                parts.append(f"- {Path(ac.path).name}: unknown ({ac.reason})")
            else:
                parts.append(
                    f"- {Path(ac.path).name}: {ac.cost.parameters / 1e6:.1f} M parameters, {ac.cost.gflops:.1f} GFLOPs "
                    f"per image at {ac.cost.image_size}x{ac.cost.image_size} ({ac.cost.label})"
                )
        if result.cost_table is not None:
            parts += ["", result.cost_table.format_markdown()]
    return "\n".join(parts) + "\n"


def served_lines(result: BenchResult) -> list[str]:
    """Each served level: the clients' view against the in-process Predictor, and Triton's split of the cost."""
    predictor = {r.batch: r for r in result.records if r.backend.startswith("in-process/")}
    lines = [
        "Served rows: N concurrent clients, one encoded PNG per request, client-side latency; images/s over the "
        "level's wall time. In-process rows: the same PNGs as Predictor.predict runs them (decode + preprocessing + "
        "model + softmax).",
        "",
    ]
    for level in result.served:
        head = (
            f"- {level.url}/{level.model}, concurrency {level.concurrency}: {level.requests} requests in "
            f"{level.wall_s:.2f} s, {level.images_per_s:.2f} images/s, client p50 {level.client_p50_ms:.2f} ms"
        )
        base = predictor.get(1)
        if base is not None and level.concurrency == 1:
            head += f" (in-process p50 at batch 1: {base.p50_ms:.2f} ms, x{level.client_p50_ms / base.p50_ms:.2f})"
        same = predictor.get(level.concurrency)
        if same is not None and level.concurrency > 1:
            head += (
                f" (in-process at batch {level.concurrency}: {same.throughput_ips:.2f} images/s, "
                f"x{level.images_per_s / same.throughput_ips:.2f})"
            )
        lines.append(head)
        total = sum(
            (ms["queue"] or 0) + (ms["compute_input"] or 0) + (ms["compute_infer"] or 0) + (ms["compute_output"] or 0)
            for name, stats in level.server.items() if name != level.model for ms in [stats.per_request_ms()]
        )  # fmt: skip
        lines += [f"  - {line}" for line in level.cost_lines()]
        lines.append(
            f"  - steps together {total:.2f} ms per request; the rest of the client's mean, "
            f"{max(level.client_mean_ms - total, 0.0):.2f} ms of {level.client_mean_ms:.2f}, is encoding, transport and "
            "the ensemble's hand-offs"
        )
    return lines


def write_csv(records: Sequence[BenchRecord], path: str | os.PathLike[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RECORD_KEYS), lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.to_dict())
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> Path:
    atomic_write_json(path, result.to_dict())
    return Path(path)


def save_bench_result(
    result: BenchResult,
    *,
    json: str | os.PathLike[str] | None = None,
    csv: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the requested files (JSON of the whole result, CSV of the records, latency PNG) atomically; their paths."""
    written = []
    if json is not None:
        written.append(write_json(result, json))
    if csv is not None:
        written.append(write_csv(result.records, csv))
    if plot is not None:
        written.append(plot_latency(result.records, plot))
    return written


def plot_latency(records: Sequence[BenchRecord], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Latency (p50, whisker up to p99, tick at p90) and throughput versus batch size, one line per series; PNG.

    With a single batch size a line has one point, so each series becomes a bar instead.
    """
    matplotlib = require("matplotlib", "draw the latency plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise UserInputError("no bench records to plot")
    series: dict[str, list[BenchRecord]] = {}
    for r in records:
        series.setdefault(r.series, []).append(r)
    batches = sorted({r.batch for r in records})
    legend_rows = (len(series) + 1) // 2
    legend_h = 0.3 + 0.22 * legend_rows  # inches
    fig_h = 4.8 + legend_h
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(13, fig_h))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rows) in enumerate(series.items()):
        rows = sorted(rows, key=lambda r: r.batch)
        color = colors[i % len(colors)]
        p50 = [r.p50_ms for r in rows]
        upper = [[0.0] * len(rows), [r.p99_ms - r.p50_ms for r in rows]]
        if len(batches) == 1:
            ax_lat.bar(i, p50[0], yerr=upper, capsize=4, color=color, label=label)
            ax_lat.scatter([i], [rows[0].p90_ms], marker="_", s=200, color="black", zorder=3)
            ax_tp.bar(i, rows[0].throughput_ips, color=color)
        else:
            x = [r.batch for r in rows]
            ax_lat.errorbar(x, p50, yerr=upper, marker="o", capsize=4, color=color, label=label)
            ax_lat.scatter(x, [r.p90_ms for r in rows], marker="_", s=150, color=color)
            ax_tp.plot(x, [r.throughput_ips for r in rows], marker="o", color=color)
    for ax in (ax_lat, ax_tp):
        ax.grid(True, which="both", alpha=0.3)
        if len(batches) == 1:
            ax.set_xticks([])
            ax.set_xlabel(f"batch size {batches[0]}")
        else:
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_xlabel("batch size")
    low, high = min(r.min_ms for r in records), max(r.p99_ms for r in records)
    if low > 0 and high / low > 20:
        ax_lat.set_yscale("log")  # a slow baseline would flatten every other series to the axis
    ax_lat.set_ylabel("latency per batch (ms)")
    ax_tp.set_ylabel("throughput (images/s, from the mean)")
    ax_lat.set_title("latency: p50, tick = p90, whisker top = p99")
    ax_tp.set_title("throughput")
    handles, labels = ax_lat.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    # room under the axes for their labels (0.6 in) and the legend
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9 if title else 0.93, wspace=0.25, bottom=(legend_h + 0.6) / fig_h)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path

"""The pipeline's report: ``report.json`` (for programs) and ``report.md`` (for people), both written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dacovid_export.calibration.precisions import precision_names, registered
from dacovid_export.bench.report import format_markdown as bench_markdown
from dacovid_export.bench.report import format_records_table, served_lines
from dacovid_export.calibration.guard_report import images_to_resolve, resolution_text
from dacovid_export.core.fileio import atomic_write_json, atomic_write_text
from dacovid_export.pipeline.config import PipelineConfig
from dacovid_export.pipeline.embedded import EMBEDDED_NOTICE
from dacovid_export.pipeline.result import PipelineResult

__all__ = ["INT8_CPU_NOTE", "report_payload", "report_markdown", "write_reports"]

INT8_CPU_NOTE = (
    "INT8 here is the TensorRT form: Q/DQ pairs with signed 8-bit activations and weights (S8S8), which is what "
    "TensorRT needs. ONNX Runtime on x86 runs such a model slower than FP32 (it is fastest with unsigned "
    "activations, U8S8); OpenVINO runs the same file as INT8, so on the CPU the INT8 headline uses the faster of "
    "the two runtimes and no second, CPU-specific INT8 model is made."
)


def _shown(path: str | Path, out: Path) -> str:
    """A file as the report names it: relative to the run folder when it is in it, else where it is (absolute)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(out).resolve()))
    except ValueError:
        return str(path.resolve())


def _guard_sizes(result: PipelineResult) -> list[tuple[str, int, float]]:
    """``(precision, validation images, target)`` of each accuracy guard that ran, read from its dict form."""
    out = []
    for precision, record in result.onnx.items():
        if record.guard is None:
            continue
        g = record.guard.to_dict()
        images = g["after"]["images"] if "after" in g else g["agreement"]["images"]
        out.append((precision, int(images), float(g.get("target_agreement", g.get("min_agreement", 1.0)))))
    return out


def _resolution_notice(result: PipelineResult) -> list[str]:
    """The embedded default's guards, where their validation images cannot resolve their targets: said once, up top."""
    short = [(p, n, target) for p, n, target in _guard_sizes(result) if images_to_resolve(target) > n]
    if not short:
        return []
    parts = ", ".join(
        f"{p.upper()} {n} images ({resolution_text(n).split(' = ')[0]}; target {target:.2%} needs "
        f"{images_to_resolve(target)})"
        for p, n, target in short
    )
    return [
        f"> Its accuracy guards judge on too few validation images to resolve their targets: {parts}. A guard figure "
        "moves in steps of one image; give `--calib-data` with enough images for figures that can tell the target "
        "from a miss.",
        "",
    ]


def write_reports(result: PipelineResult, config: PipelineConfig) -> None:
    """Write ``result.report_json`` and ``result.report_md``."""
    atomic_write_json(result.report_json, report_payload(result, config))
    atomic_write_text(result.report_md, report_markdown(result, config))


def _cost(result: PipelineResult) -> dict[str, Any]:
    return {} if result.model_cost is None else result.model_cost.to_dict()


def report_payload(result: PipelineResult, config: PipelineConfig) -> dict[str, Any]:
    """``report.json``: format ``dacovid-pipeline-report`` version 1."""
    bench, parity = result.bench, result.parity
    export: dict[str, Any] = {precision: r.to_dict() for precision, r in result.onnx.items()}
    export.update({f"engine_{precision}": r.to_dict() for precision, r in result.engines.items()})
    return {
        "format": "dacovid-pipeline-report",
        "format_version": 1,
        "embedded_default": result.embedded,
        "notice": EMBEDDED_NOTICE if result.embedded else None,
        "passed": result.passed,
        "config": config.to_dict(),
        "artifacts": [a.to_dict() for a in result.artifacts],
        "model_cost": _cost(result),
        "export": export,
        "step_seconds": dict(result.step_seconds),
        "skipped": [s.to_dict() for s in result.skipped],
        "failed": [f.to_dict() for f in result.failed],
        "parity": None if parity is None else parity.to_dict(),
        "bench": [] if bench is None else [r.to_dict() for r in bench.records],
        "bench_config": None if bench is None else bench.config.to_dict(),
        "headline": [h.to_dict() for h in result.headline],
        "environment": {} if bench is None else dict(bench.environment),
        "plots": [str(p) for p in result.plots],
        "notes": [INT8_CPU_NOTE],
        "served": _served_payload(result),
        "wall_time_s": round(result.wall_time_s, 1),
    }


def _served_payload(result: PipelineResult) -> dict[str, Any] | None:
    served = result.served
    if served is None or (served.parity is None and served.bench is None):
        return None
    return {
        "repository": None if served.repo is None else str(served.repo),
        "parity": None if served.parity is None else served.parity.to_dict(),
        "bench": [] if served.bench is None else [r.to_dict() for r in served.bench.records],
        "levels": [] if served.bench is None else [level.to_dict() for level in served.bench.served],
    }


def report_markdown(result: PipelineResult, config: PipelineConfig) -> str:
    """``report.md``: verdict, artifacts, steps, engines, skipped and failed steps, parity, headline, latency."""
    bench, parity, cost = result.bench, result.parity, _cost(result)
    md: list[str] = ["# dacovid-export pipeline report", ""]
    if result.embedded:
        md += [f"> **{EMBEDDED_NOTICE}**", ""]
        md += [
            f"> Sized to finish within 10 minutes on 2 CPU cores: parity on {result.inputs_note}, batch sizes "
            f"{', '.join(map(str, config.batch_sizes))}, {config.bench.iterations} timed iterations after "
            f"{config.bench.warmup} warm-up runs per series. Run it on a trained checkpoint and real images "
            "(`--checkpoint`, `--images`, `--calib-data`) for figures that mean something clinically.",
            "",
            *_resolution_notice(result),
        ]
    md += [f"Verdict: **{'PASS' if result.passed else 'FAIL'}** (wall time {result.wall_time_s:.0f} s).", ""]
    if cost.get("gflops") is not None:
        md += [
            f"Model: {cost['label']} (output stride, reduction kernel, reduction channels): "
            f"{cost['parameters_m']:.1f} M parameters, {cost['gflops']:.1f} GFLOPs per image at "
            f"{cost['image_size']}x{cost['image_size']} (1 multiply-add = 2 FLOPs).",
            "",
        ]
    md += ["## Artifacts", "", "| role | file | precision | size (MiB) | sha256 |", "|---|---|---|---:|---|"]
    for a in result.artifacts:
        md.append(f"| {a.role} | {_shown(a.path, result.out)} | {a.precision} | {a.size_bytes / 2**20:.1f} | `{a.sha256[:16]}...` |")
    md += ["", "## Steps", "", "| step | seconds |", "|---|---:|"]
    md += [f"| {name} | {seconds:.1f} |" for name, seconds in result.step_seconds.items()]
    for kind in registered():
        if kind.made_by_step and kind.name in result.onnx:
            md += ["", kind.model_line(result.onnx[kind.name].fp32_nodes)]
            guard = result.onnx[kind.name].guard
            if guard is not None:
                md += ["", *(f"- {line}" for line in guard.lines())]
    built = [(p, result.engines[p]) for p in precision_names() if p in result.engines]
    if built:
        md += [
            "", "## Engines", "",
            "| engine | sidecar | runtime | targets | size (MiB) | build (s) | loaded here |",
            "|---|---|---|---|---:|---:|---|",
        ]  # fmt: skip
        shown = [(precision, e.to_dict()) for precision, e in built]
        sidecars = [record.result.metadata_path for _, record in built]  # report.json leaves it to the sidecar
        for (_, e), sidecar in zip(shown, sidecars):
            targets = ", ".join(e["compute_capabilities"]) or "build GPU"
            md.append(
                f"| {_shown(e['path'], result.out)} | {_shown(sidecar, result.out)} | {e['runtime']} | {targets} | "
                f"{e['size_bytes'] / 2**20:.1f} | {e['seconds']:.1f} | {e['loaded_here']} |"
            )
        for precision, e in shown:
            md += ["", f"{precision.upper()} engine:", "", "```", *e["precision_table"], "```"]
    if result.skipped or result.failed:
        md += ["", "## Skipped and failed steps", ""]
        md += [f"- skipped **{s.step}**: {s.reason}" for s in result.skipped]
        md += [f"- FAILED **{f.step}**: {f.reason}" for f in result.failed]
    if parity is not None:
        md += ["", "## Parity with the PyTorch checkpoint", "", "```", parity.format_table(), "```"]
        confusion = [p for p in result.plots if p.parent.name == "confusion"]
        if confusion:
            md += ["", "Confusion matrices: " + ", ".join(f"[{p.name}](confusion/{p.name})" for p in confusion)]
    if result.headline:
        md += ["", "## Headline ratios (median latency)", ""]
        md += [f"- {h.text()}" for h in result.headline]
    if bench is not None:
        md += ["", bench_markdown(bench, heading_level=2).rstrip(), "", "![latency versus batch](latency.png)"]
    served = result.served
    if served is not None and served.parity is not None and served.bench is not None:
        md += ["", "## Served", "",
               f"The FP32 and INT8 models served by Triton from `{served.repo}` (python backend, CPU), sent the same "
               "image files encoded; docs/serving.md.", "", "```", served.parity.format_table(), "```", "",
               format_records_table(served.bench.records), "", *served_lines(served.bench)]  # fmt: skip
    md += ["", "## Notes", "", f"- {INT8_CPU_NOTE}"]
    return "\n".join(md) + "\n"

"""The pipeline's run: ``run_pipeline`` chains the steps, checkpoint -> ONNX -> engines -> parity -> latency -> report.

Each step is its own module: :mod:`.inputs` (the checkpoint and images, the
embedded default from :mod:`.embedded`), :mod:`.exports` (ONNX FP32/FP16/INT8),
:mod:`.engines` (TensorRT engines), parity (:mod:`dacovid_export.parity`),
latency (:mod:`dacovid_export.bench`, headline ratios in :mod:`.latency`) and
:mod:`.report`.
"""

from __future__ import annotations

import time
from pathlib import Path

from dacovid_export.bench.cost import artifact_cost
from dacovid_export.bench.report import save_bench_result
from dacovid_export.bench.run import run_benchmark
from dacovid_export.core.progress import StepTimer
from dacovid_export.parity.run import run_parity
from dacovid_export.pipeline.config import PARITY_BATCH, PipelineConfig
from dacovid_export.pipeline.engines import build_engines, runnable_engines
from dacovid_export.pipeline.exports import ONNX_STEPS, make_onnx_models
from dacovid_export.pipeline.inputs import check_inputs, prepare_inputs
from dacovid_export.pipeline.latency import headline_ratios
from dacovid_export.pipeline.outcomes import ArtifactEntry
from dacovid_export.pipeline.report import write_reports
from dacovid_export.pipeline.result import PipelineResult
from dacovid_export.pipeline.served import serve_models

__all__ = ["PIPELINE_STEPS", "run_pipeline"]

# the steps every run times and numbers ([i/n] on the terminal): inputs, the ONNX steps of .exports (FP32 export,
# FP16, INT8, guarded BF16), TensorRT engines, parity, latency, served. A step that cannot run here still runs as a
# step: it records why it was skipped, in a second.
PIPELINE_STEPS = 1 + len(ONNX_STEPS) + 4


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Checkpoint (or the embedded default) -> ONNX FP32/FP16/INT8 -> engines -> parity -> latency -> served -> report."""

    t_start = time.perf_counter()
    out = config.out
    check_inputs(config)
    timer = StepTimer(config.progress, total=PIPELINE_STEPS, stage="pipeline")

    # 1. inputs: the checkpoint and the images for calibration and parity
    with timer.step("inputs"):
        inputs = prepare_inputs(config, timer)
    model_cost = artifact_cost(inputs.checkpoint)  # shapes only (meta device): well under a second

    # 2-5. ONNX models (FP32, FP16, INT8, guarded BF16); the FP32 export must succeed, the precision steps may fail their checks
    onnx = make_onnx_models(inputs, config, timer)

    # 6. TensorRT engines: TensorRT where a GPU is visible, TensorRT-RTX (a base dependency) anywhere else
    with timer.step("TensorRT engines"):
        engines = build_engines(onnx.paths, config, timer)
    runnable = runnable_engines(engines.paths, config)
    models = [*onnx.paths.values(), *runnable.paths]

    # 7. parity against the checkpoint
    with timer.step(f"parity on {inputs.note}"):
        parity = run_parity(
            inputs.checkpoint,
            models,
            images=inputs.images,
            batch_size=PARITY_BATCH,
            seed=config.seed,
            device=config.device,
            progress=config.progress,
            training_data=config.training_data,
        )
    plots: list[Path] = []
    if parity.reference.classification is not None:
        plots.extend(parity.write_confusion_pngs(out / "confusion"))

    # 8. latency
    with timer.step("latency"):
        bench = run_benchmark([str(inputs.checkpoint), *(str(m) for m in models)], config.bench)
        plots += save_bench_result(bench, plot=out / "latency.png")
        save_bench_result(bench, csv=out / "bench.csv")

    # 9. the FP32 and INT8 models served by Triton, judged and timed at the endpoint
    with timer.step("served"):
        served = serve_models(inputs.checkpoint, onnx.paths, inputs.images, config)

    artifacts = (
        ArtifactEntry.of("checkpoint", inputs.checkpoint, "fp32"),
        *(ArtifactEntry.of(f"onnx {p}", path, p) for p, path in onnx.paths.items()),
        *(ArtifactEntry.of(f"engine {p}", path, p) for p, path in engines.paths.items()),
    )
    result = PipelineResult(
        out=out,
        report_md=out / "report.md",
        report_json=out / "report.json",
        embedded=config.embedded,
        artifacts=artifacts,
        skipped=(*onnx.skipped, *engines.skipped, *runnable.skipped, *served.skipped),
        failed=(*onnx.failed, *engines.failed, *served.failed),
        parity=parity,
        bench=bench,
        headline=headline_ratios(bench),
        plots=tuple(plots),
        wall_time_s=time.perf_counter() - t_start,
        onnx=onnx.records,
        engines=engines.records,
        step_seconds={name: round(seconds, 2) for name, seconds in timer.seconds.items()},
        model_cost=model_cost,
        inputs_note=inputs.note,
        served=served,
    )
    write_reports(result, config)
    return result

"""`dacovid-export pipeline`: checkpoint -> ONNX FP32/FP16/INT8 -> engines -> parity -> latency -> report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dacovid_export.cli.common import QatFlags, field_default, handle_errors, qat_options, training_data_option, verbosity_options
from dacovid_export.core.errors import UserInputError
from dacovid_export.calibration.config import DEFAULT_CALIB_SIZE
from dacovid_export.pipeline.config import PIPELINE_BENCH
from dacovid_export.pipeline.embedded import EMBEDDED_IMAGE_SIZE

__all__ = ["pipeline"]

_DIR = click.Path(file_okay=False, path_type=Path)


def _model_options(values: tuple[str, ...]) -> dict[str, int]:
    options: dict[str, int] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise UserInputError(f"--model-option {item!r}: write KEY=INTEGER, e.g. output_stride=16")
        options[key.strip()] = int(value)
    return options


@click.command(name="pipeline", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Trained checkpoint. Without it: the embedded default (seeded untrained model, synthetic images).")
@click.option("--images", type=click.Path(path_type=Path), default=None, help="Class-per-folder images for parity, or a dacovid-train split.json (its held-out images) (default: synthetic images).")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None, help="Calibration images for INT8 (training images, not the parity set), or a split.json (its training images).")
@click.option("--out", "out", type=_DIR, required=True, help="Folder for the models, engines, report.md/json and plots.")
@click.option("--image-size", type=int, default=None, help=f"Embedded default only: input size [default: {EMBEDDED_IMAGE_SIZE}].")
@click.option("--model-option", "model_option", multiple=True, metavar="KEY=N",
              help="Embedded default only: output_stride=8|16|32, reduction_kernel_size=3|1, reduction_channels=N.")
@click.option("--batch", default=",".join(map(str, PIPELINE_BENCH.batch_sizes)), show_default=True, metavar="LIST",
              help="Batch sizes to time, e.g. 1,8.")
@click.option("--iterations", type=int, default=field_default(PIPELINE_BENCH, "iterations"), show_default=True,
              help="Timed iterations per latency series.")
@click.option("--warmup", type=int, default=field_default(PIPELINE_BENCH, "warmup"), show_default=True,
              help="Warm-up runs per latency series.")
@click.option("--calib-size", type=int, default=None, help=f"Calibration images to sample (default: all for the embedded default, {DEFAULT_CALIB_SIZE} otherwise).")
@click.option("--device", default=field_default(PIPELINE_BENCH, "device"), show_default=True, metavar="auto|cpu|cuda",
              help="Where parity and latency run.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime while timing.")
@click.option("--seed", type=int, default=field_default(PIPELINE_BENCH, "seed"), show_default=True)
@click.option("--serve-env", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Serving environment ('dacovid-export serve-env DIR'): also serve the FP32 and INT8 models with Triton "
                   "and add endpoint parity and latency to the report  [default: $DACOVID_SERVE_ENV, else skipped].")
@qat_options("Make the INT8 model with quantization-aware fine-tuning (as 'onnx --qat'; needs --checkpoint and --calib-data).")
@training_data_option
@click.option("--no-progress", is_flag=True, help="No step lines or progress bars on stderr.")
@verbosity_options
@handle_errors
def pipeline(
    checkpoint: Path | None,
    images: Path | None,
    calib_data: Path | None,
    out: Path,
    image_size: int | None,
    model_option: tuple[str, ...],
    batch: str,
    iterations: int,
    warmup: int,
    calib_size: int | None,
    device: str,
    threads: int | None,
    seed: int,
    serve_env: Path | None,
    qat: QatFlags,
    training_data: Path | None,
    no_progress: bool,
) -> None:
    """Export, check and time a model in one go, and write report.md, report.json and plots to --out.

    TensorRT engines are built when TensorRT and a GPU are present; otherwise
    the report says they were skipped and why. Exit status 1 when a model
    fails its parity tolerance or a step fails its self-check (the report is
    still written).
    """
    import dataclasses

    from dacovid_export.bench.config import parse_int_list
    from dacovid_export.pipeline import PipelineConfig, PipelinePrecision, run_pipeline

    # the one place the flat options become the nested configs; --seed and --no-progress rule every step (bench's)
    bench = dataclasses.replace(
        PIPELINE_BENCH, device=device, batch_sizes=parse_int_list(batch, "--batch"), iterations=iterations,
        warmup=warmup, threads=threads, seed=seed, progress=not no_progress,
    )
    config = PipelineConfig(
        out=out,
        checkpoint=checkpoint,
        images=images,
        image_size=image_size,
        model_options=_model_options(model_option),
        serve_env=serve_env,
        precision=PipelinePrecision(
            calib_data=calib_data, calib_size=calib_size, training_data=training_data, train_data=qat.train_data
        ),
        qat=qat.config(seed),
        bench=bench,
    )
    result = run_pipeline(config)
    click.echo("\n".join(result.summary_lines()))
    if not result.passed:
        click.echo(f"error: the pipeline found failures; see {result.report_md}", err=True)
        sys.exit(1)

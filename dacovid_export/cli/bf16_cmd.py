"""`dacovid-export bf16-guard`: may this FP32 model run in BF16 (OpenVINO) here? Agreement with FP32, or refusal."""

from __future__ import annotations

from pathlib import Path

import click

from dacovid_export.calibration.bf16 import Bf16GuardConfig, guard_bf16_on
from dacovid_export.cli.common import field_default, handle_errors, training_data_option, verbosity_options

__all__ = ["bf16_guard"]


@click.command(name="bf16-guard", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--validation-data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Images no other step used: a class-per-folder tree, or a training run's split.json (its held-out part).")
@click.option("--size", type=int, default=field_default(guard_bf16_on, "size"), show_default=True, help="At most this many validation images (seeded, class-stratified).")
@click.option("--min-agreement", type=float, default=field_default(Bf16GuardConfig, "min_agreement"), show_default=True, help="Top-1 agreement with FP32 BF16 must reach.")
@click.option("--threads", type=int, default=None, help="OpenVINO threads (default: all cores).")
@click.option("--seed", type=int, default=field_default(guard_bf16_on, "seed"), show_default=True, help="Seed of the image sample.")
@training_data_option
@verbosity_options
@handle_errors
def bf16_guard(
    model: Path, validation_data: Path, size: int, min_agreement: float, threads: int | None, seed: int,
    training_data: Path | None,
) -> None:
    """Run the FP32 ONNX MODEL in BF16 with OpenVINO and compare it with FP32 on validation images.

    Exit 0: agreement >= --min-agreement, BF16 may be used (Predictor/bench: inference_precision
    'bf16'); exit 1: refused, with the figures; exit 2: bad input or a CPU without BF16.
    BF16 is never chosen by `auto`: this is the gate before you ask for it.
    """
    config = Bf16GuardConfig(min_agreement=min_agreement, threads=threads)
    report = guard_bf16_on(model, validation_data, config, size=size, seed=seed, training_data=training_data)
    for line in report.lines():
        click.echo(line)

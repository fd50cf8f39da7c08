"""`dacovid-export check`: the parity verdict of exported models against their checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dacovid_export.cli.common import field_default, handle_errors, training_data_option, verbosity_options
from dacovid_export.parity.run import run_parity

__all__ = ["check"]

_OUT = click.Path(dir_okay=False, writable=True, path_type=Path)

_CRITERIA = {
    "min_agreement": "minimum top-1 agreement with the reference (fraction)",
    "max_logit_rel": "max |logit diff| / max |reference logit|",
    "max_prob_diff": "max |probability diff|",
    "max_accuracy_drop": "max accuracy drop vs the reference, labelled images (fraction: 0.01 = 1 point)",
}


def _tolerance_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--<precision>-<criterion> X`` for every tolerance, with ParityConfig's defaults in the help."""
    from dacovid_export.parity.config import ParityConfig

    defaults = ParityConfig()
    for precision in reversed(defaults.precisions):
        tolerance = defaults.tolerance_for(precision).to_dict()
        for criterion in reversed(list(_CRITERIA)):
            value = tolerance[criterion]
            text = f"{precision.upper()} models: {_CRITERIA[criterion]} [default: {'unchecked' if value is None else value}]."
            flag = f"--{precision}-{criterion.replace('_', '-')}"
            fn = click.option(flag, f"{precision}_{criterion}", type=float, default=None, metavar="X", help=text)(fn)
    return fn


@click.command(name="check", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, required=False, type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="The PyTorch checkpoint: the reference.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Class-per-folder labelled images, or a dacovid-train split.json for its held-out images (adds accuracy, per-class metrics, confusion matrices). "
                   "Without it: seeded synthetic inputs.")
@click.option("--triton", "triton_urls", multiple=True, metavar="URL",
              help="A live Triton endpoint (http://HOST:PORT or grpc://HOST:PORT, optionally /MODEL) judged like one more model: it is sent "
                   "the encoded --images files. Repeatable.")
@click.option("--cpp", "cpp", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="A built dacovid_infer (cpp/): every MODEL also runs through the C++ runtime, decoding and preprocessing the "
                   "--images files itself, one more row each.")
@click.option("--triton-model", default=field_default(run_parity, "endpoint_model"), show_default=True, help="The served ensemble a --triton URL without /MODEL calls.")
@click.option("--json", "json_out", type=_OUT, default=None, help="Write the full report as JSON.")
@click.option("--confusion-png", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Write confusion-matrix PNGs (labelled images only).")
@click.option("--batch-size", type=int, default=field_default(run_parity, "batch_size"), show_default=True, help="Images per batch (split further to each model's max batch).")
@click.option("--synthetic-count", type=int, default=field_default(run_parity, "synthetic_count"), show_default=True, help="Synthetic inputs when --images is not given.")
@click.option("--seed", type=int, default=field_default(run_parity, "seed"), show_default=True, help="Seed of the synthetic inputs.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
              help="Where the reference and the models run (TensorRT engines: always cuda).")
@click.option("--allow-source-mismatch", is_flag=True,
              help="A model exported from another checkpoint file is a warning instead of a failure.")
@_tolerance_options
@click.option("--strict-dicom", is_flag=True,
              help="Refuse a DICOM image whose modality is not CR/DX or whose body part is not the chest (default: read it, with a warning).")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@training_data_option
@verbosity_options
@handle_errors
def check(
    models: tuple[Path, ...],
    checkpoint: Path,
    images: Path | None,
    json_out: Path | None,
    confusion_png: Path | None,
    batch_size: int,
    synthetic_count: int,
    seed: int,
    device: str,
    allow_source_mismatch: bool,
    triton_urls: tuple[str, ...],
    triton_model: str,
    cpp: Path | None,
    no_progress: bool,
    strict_dicom: bool,
    training_data: Path | None,
    **tolerances: float | None,
) -> None:
    """Compare MODEL... (ONNX models, TensorRT engines), --triton endpoints and the --cpp runtime with --checkpoint on the same inputs.

    Each model is judged by the tolerance of its precision (from its metadata), on the --images that
    neither trained the checkpoint (its record, or --training-data) nor chose the model (its accuracy
    guard's validation images); those are reported in rows of their own. Prints a table; exits 0 when every model passes, 1 when one fails, 2 for bad input.
    """
    from dacovid_export.core.errors import CheckFailedError
    from dacovid_export.parity.config import ParityConfig
    from dacovid_export.parity.run import check_parity

    config = ParityConfig(require_same_source=not allow_source_mismatch).with_overrides(
        {k: v for k, v in tolerances.items() if v is not None}
    )
    report, written = check_parity(
        checkpoint,
        [str(m) for m in models],
        images=images,
        json=json_out,
        confusion_png=confusion_png,
        config=config,
        batch_size=batch_size,
        synthetic_count=synthetic_count,
        seed=seed,
        device=device,
        progress=not no_progress,
        endpoints=triton_urls,
        endpoint_model=triton_model,
        strict_dicom=strict_dicom,
        training_data=training_data,
        cpp=cpp,
    )
    click.echo(report.format_table())
    for path in written:
        click.echo(f"wrote {path}", err=True)
    if not report:
        names = ", ".join(Path(m.path).name for m in report.failed_models)
        raise CheckFailedError(f"parity failed for {len(report.failed_models)} of {len(report.models)} model(s): {names}")

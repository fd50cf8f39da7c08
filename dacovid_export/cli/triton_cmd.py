"""`dacovid-export triton`: a Triton model repository that takes encoded images and answers with the class."""

from __future__ import annotations

from pathlib import Path

import click

from dacovid_export.cli.common import field_default, handle_errors, verbosity_options
from dacovid_export.serve.triton import DEFAULT_ONNX_MAX_BATCH, write_triton_repository

__all__ = ["triton"]


@click.command(name="triton")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), required=True, help="Model repository folder (created if missing).")
@click.option("--name", default=field_default(write_triton_repository, "name"), show_default=True, help="Name of the ensemble clients call; the steps are NAME_preprocess, NAME_classifier, NAME_postprocess.")
@click.option("--backend", type=click.Choice(["auto", "native", "python"]), default=field_default(write_triton_repository, "backend"), show_default=True,
              help="Classifier: python (this package's runtimes in Triton's python backend: ONNX Runtime, OpenVINO for INT8 on a CPU, "
                   "TensorRT/TensorRT-RTX), native (tensorrt_plan / onnxruntime_onnx of NGC containers); auto: native for TensorRT 10/11 engines, else python.")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default=None,
              help="Where classifier instances run  [default: cpu for ONNX through the python backend, else gpu].")
@click.option("--max-batch", type=int, default=None, help=f"Triton max_batch_size  [default: the engine's profile maximum; {DEFAULT_ONNX_MAX_BATCH} for ONNX].")
@click.option("--instances", type=int, default=field_default(write_triton_repository, "instances"), show_default=True, help="Classifier and preprocessing instances (per GPU, or on the CPU).")
@click.option("--max-queue-delay-us", type=int, default=field_default(write_triton_repository, "max_queue_delay_us"), show_default=True, help="Dynamic batching: longest wait for a fuller batch (microseconds).")
@click.option("--overwrite", is_flag=True, help="Replace existing models of the same names.")
@verbosity_options
@handle_errors
def triton(
    model: Path, repo: Path, name: str, backend: str, kind: str | None, max_batch: int | None, instances: int,
    max_queue_delay_us: int, overwrite: bool,
) -> None:
    """Write REPO/NAME (ensemble: image bytes -> probabilities, class_name, logits) and its three steps.

    Preprocessing is the artifact's own, read from its metadata; every config.pbtxt
    is written through Triton's ModelConfig schema. Serve it with 'dacovid-export serve REPO'.
    """
    written = write_triton_repository(
        model, repo, name=name, backend=backend, kind=kind, max_batch=max_batch, instances=instances,
        max_queue_delay_us=max_queue_delay_us, overwrite=overwrite,
    )  # fmt: skip
    click.echo(
        f"wrote Triton models {', '.join(written.models)} in {written.repo} "
        f"({written.classifier_backend} classifier, {written.kind}, max batch {written.max_batch})"
    )
    click.echo(f"serve with: dacovid-export serve {written.repo}   (ensemble {written.ensemble!r} takes encoded images)")

"""`dacovid-export triton`: a Triton Inference Server model repository for an engine or an ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from dacovid_export.cli.common import handle_errors

__all__ = ["triton"]


@click.command(name="triton")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), required=True, help="Model repository folder (created if missing).")
@click.option("--name", default="dacovid", show_default=True, help="Model name: the folder REPO/NAME.")
@click.option("--max-batch", type=int, default=None, help="Triton max_batch_size  [default: the engine's profile maximum; 8 for ONNX].")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (per GPU, or on the CPU).")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default=None, help="Where ONNX Runtime instances run  [default: gpu]; engines are GPU only.")
@click.option("--overwrite", is_flag=True, help="Replace an existing REPO/NAME model.")
@handle_errors
def triton(
    model: Path, repo: Path, name: str, max_batch: int | None, instances: int, kind: str | None, overwrite: bool
) -> None:
    """Write REPO/NAME/config.pbtxt, labels.txt and 1/model.plan (engine) or 1/model.onnx (ONNX).

    Dynamic batching is on; the model's classes, preprocessing, precision and
    checksums are stored as config parameters. An engine only loads in a Triton
    built on the same TensorRT version, on the GPU architecture it was built for.
    """
    from dacovid_export.serve.triton import write_triton_repository

    model_dir = write_triton_repository(
        model, repo, name=name, max_batch=max_batch, instances=instances, kind=kind, overwrite=overwrite
    )
    files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    click.echo(f"wrote Triton model {model_dir}: {', '.join(files)}")
    click.echo(f"serve with: tritonserver --model-repository={model_dir.parent}")

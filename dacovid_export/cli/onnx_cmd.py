"""`dacovid-export onnx`: checkpoint -> self-checked ONNX model (FP32, FP16, INT8 or guarded BF16)."""

from __future__ import annotations

from pathlib import Path

import click

from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import export_at_precision
from dacovid_export.calibration.precisions import precision_names, registered
from dacovid_export.cli.common import PrecisionFlags, field_default, handle_errors, precision_options, verbosity_options
from dacovid_export.export.config import MAX_OPSET, MIN_OPSET, OnnxExportConfig

__all__ = ["onnx"]


@click.command(name="onnx")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("-o", "--output", required=True, metavar="OUT.onnx", help="ONNX file to write (one file, weights embedded).")
@click.option(
    "--precision",
    type=click.Choice(precision_names()),
    default=field_default(PrecisionConfig, "precision"),
    show_default=True,
    help="; ".join(p.summary for p in registered() if p.made_by_step) + ".",
)
@precision_options("INT8: quantization-aware fine-tuning (distilled to the checkpoint) before the export; the fine-tuned checkpoint is kept as OUT.qat.pt and reused, an interrupted fine-tune resumes.")
@click.option("--opset", type=int, default=field_default(OnnxExportConfig, "opset"), show_default=True, metavar="N", help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET}.")
@click.option("--max-batch", type=int, default=None, metavar="N", help="Static: the batch size (default 1). Dynamic: hint for engine profiles.")
@click.option("--static-batch", is_flag=True, help="Fix the batch dimension instead of leaving it dynamic.")
@click.option("--seed", type=int, default=field_default(OnnxExportConfig, "seed"), show_default=True, help="Seed of the self-check inputs and calibration sampling.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, metavar="DIR", help="Reuse INT8 calibration results across runs.")
@click.option("--atol", type=float, default=None, help="Self-check absolute tolerance on logits of the written model (fp32: vs PyTorch; fp16: vs the FP32 ONNX; int8/bf16: reported only, --min-agreement decides). Default by precision.")
@click.option("--rtol", type=float, default=None, help="Self-check tolerance relative to the logits' scale (same comparison as --atol). Default by precision.")
@verbosity_options
@handle_errors
def onnx(
    checkpoint: str,
    output: str,
    precision: str,
    step: PrecisionFlags,
    opset: int,
    max_batch: int | None,
    static_batch: bool,
    seed: int,
    cache_dir: Path | None,
    atol: float | None,
    rtol: float | None,
) -> None:
    """Export CHECKPOINT to ONNX, check the graph and compare it with PyTorch.

    The output is written only when every check passes: valid ONNX, operators
    the TensorRT parser supports, PAM and CAM as MatMul -> Softmax -> MatMul,
    and ONNX Runtime matching PyTorch at batch 1 and 3.
    """
    fp32 = precision == "fp32"
    # --atol/--rtol judge the written model: against PyTorch for fp32, against the FP32 ONNX for fp16/int8
    export = OnnxExportConfig(
        opset=opset,
        max_batch=max_batch,
        static_batch=static_batch,
        seed=seed,
        atol=atol if fp32 else None,
        rtol=rtol if fp32 else None,
    )
    config = step.config(
        precision, seed=seed, cache_dir=cache_dir, atol=None if fp32 else atol, rtol=None if fp32 else rtol
    )
    result = export_at_precision(checkpoint, output, export, config, progress=True)
    for line in result.summary_lines():
        click.echo(line)

"""`dacovid-export trt`: build a strongly typed TensorRT or TensorRT-RTX engine from an ONNX model (or print the trtexec line)."""

from __future__ import annotations

from pathlib import Path

import click

# constants only: trt.library imports TensorRT lazily, inside functions
from dacovid_export.calibration.precisions import engine_precisions, precision_of
from dacovid_export.cli.common import F, field_default, handle_errors, int8_guard_options, verbosity_options
from dacovid_export.engine.config import EngineBuildConfig
from dacovid_export.trt.library import RUNTIME_CHOICES
from dacovid_export.trt.targets import RTX_DEFAULT_TARGETS, RTX_TARGETS

__all__ = ["trt"]


def _precision_flags(fn: F) -> F:
    """``--<precision>`` for each precision with an engine, its help from the registry (calibration.precisions)."""
    for name in reversed(_flag_order()):
        fn = click.option(f"--{name}", is_flag=True, help=precision_of(name).engine_help)(fn)
    return fn


def _flag_order() -> tuple[str, ...]:
    """The reduced precisions first (what people build), FP32 last, as the help has always listed them."""
    names = engine_precisions()
    return (*(n for n in names if n != "fp32"), *(n for n in names if n == "fp32"))


def _precision(flags: dict[str, bool]) -> str:
    from dacovid_export.core.errors import UserInputError

    chosen = [name for name in _flag_order() if flags.get(name)]
    if len(chosen) != 1:
        given = ", ".join(f"--{c}" for c in chosen) if chosen else "none"
        names = [f"--{n}" for n in _flag_order()]
        raise UserInputError(f"give exactly one precision, {', '.join(names[:-1])} or {names[-1]} (given: {given})")
    return chosen[0]


@click.command(name="trt")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@_precision_flags
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Engine file (.engine/.plan); its metadata goes to OUTPUT.json.")
@click.option("--calib-data", type=click.Path(path_type=Path), help="Class-per-folder calibration images, or a dacovid-train split.json (its training images); INT8 from an FP32 ONNX.")
@int8_guard_options
@click.option("--qat", is_flag=True, help="INT8 with quantization-aware fine-tuning: refused here with the two commands that do it (it fine-tunes the checkpoint, trt starts from an ONNX).")
@click.option("--min-batch", type=int, default=field_default(EngineBuildConfig, "min_batch"), show_default=True, help="Smallest batch the engine accepts.")
@click.option("--opt-batch", type=int, default=None, help="Batch TensorRT tunes for  [default: --max-batch]; 1 favours single-image latency.")
@click.option("--max-batch", type=int, default=field_default(EngineBuildConfig, "max_batch"), show_default=True, help="Largest batch the engine accepts.")
@click.option("--workspace", type=float, default=field_default(EngineBuildConfig, "workspace_gib"), show_default=True, help="TensorRT workspace limit in GiB.")
@click.option("--opt-level", type=int, default=field_default(EngineBuildConfig, "opt_level"), show_default=True, help="Builder optimization level 0-5 (higher: slower build, maybe faster engine).")
@click.option("--timing-cache", type=click.Path(path_type=Path, dir_okay=False), help="Timing cache file, read if present and saved after the build (one per GPU type).")
@click.option("--hardware-compatible", is_flag=True, help="TensorRT: engine that runs on any Ampere or newer GPU (compute capability >= 8.0); may be slower.")
@click.option("--runtime", type=click.Choice(RUNTIME_CHOICES), default=field_default(EngineBuildConfig, "runtime"), show_default=True, help="tensorrt: TensorRT 10.8+/11.x, builds on the GPU it targets (data-centre GPUs, Turing). tensorrt-rtx: TensorRT for RTX GPUs, builds without a GPU. auto: TensorRT where it is installed and a GPU is visible, else TensorRT-RTX.")
@click.option("--target-cc", default=None, metavar="CC[,CC...]", help=f"TensorRT-RTX: compute capabilities to compile for, e.g. 8.6,8.9,12.0 (of {', '.join(RTX_TARGETS)})  [default: TensorRT-RTX's own set, {'/'.join(RTX_DEFAULT_TARGETS)}+].")
@click.option("--print-trtexec", is_flag=True, help="Only print the equivalent trtexec command (no TensorRT needed) and exit.")
@click.option("--trt-major", type=click.Choice(["10", "11"]), default=None, help="With --print-trtexec: flags for this TensorRT major version [default: the installed one, else both].")
@verbosity_options
@handle_errors
def trt(
    model: Path,
    output: Path,
    calib_data: Path | None,
    min_agreement: float | None,
    validation_data: Path | None,
    training_data: Path | None,
    qat: bool,
    min_batch: int,
    opt_batch: int | None,
    max_batch: int,
    workspace: float,
    opt_level: int,
    timing_cache: Path | None,
    hardware_compatible: bool,
    runtime: str,
    target_cc: str | None,
    print_trtexec: bool,
    trt_major: str | None,
    **precision_flags: bool,
) -> None:
    """Build a TensorRT engine from MODEL.onnx as a strongly typed network.

    The precision comes from the ONNX graph, never from builder flags (TensorRT 11
    and TensorRT-RTX have none): an FP32 ONNX with --fp16/--int8 first becomes the
    FP16/INT8 ONNX (written beside the engine), which is then built. TensorRT
    10.8+/11.x builds on the GPU the engine is for; TensorRT-RTX builds on any
    machine and compiles kernels on the RTX GPU at first run. The precision
    TensorRT's parser gave each node is printed and kept in OUTPUT.json.
    """
    from dacovid_export.core.errors import UserInputError

    if qat:
        from dacovid_export.engine.make import refuse_qat_engine

        refuse_qat_engine(model, output, calib_data)
    config = EngineBuildConfig(
        precision=_precision(precision_flags),
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        workspace_gib=workspace,
        opt_level=opt_level,
        timing_cache=timing_cache,
        hardware_compatible=hardware_compatible,
        runtime=runtime,
        target_cc=_target_cc(target_cc),
    )
    if trt_major is not None and not print_trtexec:
        raise UserInputError("--trt-major only applies to --print-trtexec (a build uses the installed TensorRT)")
    if print_trtexec and runtime == "tensorrt-rtx":
        raise UserInputError(
            "--print-trtexec prints TensorRT's trtexec command; TensorRT-RTX has its own tool (tensorrt_rtx): "
            "drop --runtime tensorrt-rtx, or drop --print-trtexec"
        )
    if print_trtexec:
        _print_trtexec(model, output, config, int(trt_major) if trt_major else None)
        return

    from dacovid_export.engine.make import engine_precision_config, make_engine

    step = engine_precision_config(
        model, config.precision, calib_data=calib_data, min_agreement=min_agreement, validation_data=validation_data,
        training_data=training_data,
    )
    result = make_engine(model, output, config, step, log_steps=True, progress=True)
    meta = result.metadata
    if meta.runtime == "tensorrt-rtx":
        target = f"for compute capabilities {', '.join(meta.compute_capabilities)}"
    else:
        target = f"{meta.gpu_name} cc {meta.compute_capability_str}{', ampere+' if meta.hardware_compatible else ''}"
    click.echo(
        f"wrote {result.engine_path} ({meta.engine_bytes / 2**20:.1f} MiB, {meta.precision}, batch "
        f"{meta.min_batch}..{meta.max_batch} opt {meta.opt_batch}, {meta.runtime_label}, {target})"
    )
    for line in result.layer_precisions.table_lines():
        click.echo(line)
    click.echo(f"loaded here: {result.verified}")
    click.echo(f"metadata {result.metadata_path}")
    if result.converted_onnx is not None:
        click.echo(f"built from {result.converted_onnx} (precision step from {model})")
    if result.timing_cache is not None:
        click.echo(f"timing cache {result.timing_cache}")
    click.echo(f"total {result.total_seconds:.1f} s")


def _target_cc(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip()) or (text,)


def _print_trtexec(model: Path, output: Path, config: "EngineBuildConfig", trt_major: int | None) -> None:
    from dacovid_export.engine.trtexec import format_command, trtexec_equivalent

    commands = trtexec_equivalent(model, output, config, trt_major=trt_major)
    for major, cmd in commands:
        if len(commands) > 1:
            click.echo(f"# TensorRT {major}.x")
        click.echo(format_command(cmd))
    onnx_arg = commands[0][1][1].removeprefix("--onnx=")
    if Path(onnx_arg) != model:
        click.echo(
            f"note: {onnx_arg} is the {config.precision} ONNX that the precision step of 'dacovid-export trt' writes "
            "before building; trtexec has no such step, so make that ONNX first (e.g. run the same command without "
            "--print-trtexec on a machine with TensorRT)",
            err=True,
        )

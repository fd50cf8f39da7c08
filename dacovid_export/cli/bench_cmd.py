"""`dacovid-bench` (also `dacovid-export bench`): latency of checkpoints, ONNX models and engines."""

from __future__ import annotations

from pathlib import Path

import click

from dacovid_export.bench.config import (
    AUTOCAST_CHOICES,
    BACKEND_CHOICES,
    DEFAULT_ITERATIONS,
    DEVICE_CHOICES,
    BenchConfig,
)
from dacovid_export.bench.cpp import CppBenchConfig
from dacovid_export.cli.common import (
    field_default,
    OneLineErrorsCommand,
    handle_errors,
    verbosity_options,
)

__all__ = ["bench", "main"]

_OUT = click.Path(dir_okay=False, writable=True, path_type=Path)


@click.command(name="bench", cls=OneLineErrorsCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("artifacts", nargs=-1, required=False, type=click.Path(path_type=Path))
# backend and device are checked by BenchConfig, so a wrong value is one line, like every other error
@click.option("--backend", default=field_default(BenchConfig, "backend"), show_default=True, metavar="|".join(BACKEND_CHOICES),
              help="auto: torch for checkpoints, onnxruntime for .onnx (plus openvino for INT8 .onnx on the CPU), tensorrt for engines.")
@click.option("--device", default=field_default(BenchConfig, "device"), show_default=True, metavar="|".join(DEVICE_CHOICES),
              help="auto: cuda when a GPU is visible, else cpu.")
@click.option("--batch", "batch", default=",".join(map(str, field_default(BenchConfig, "batch_sizes"))), show_default=True, metavar="LIST", help="Batch sizes, e.g. 1,8,32.")
@click.option("--image-size", type=int, default=None, help="Check that every artifact takes N x N inputs (default: each artifact's own).")
@click.option("--warmup", type=int, default=field_default(BenchConfig, "warmup"), show_default=True, help="Untimed runs before each series.")
@click.option("--iterations", type=int, default=None, help=f"Timed runs per series [default: {DEFAULT_ITERATIONS}].")
@click.option("--duration", type=float, default=None, metavar="SECONDS", help="Time each series for this long instead of --iterations.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch, ONNX Runtime and OpenVINO (default: torch's setting; ORT: physical cores; OpenVINO: its own).")
@click.option("--autocast", default=None, metavar="LIST", help=f"PyTorch autocast precisions to add ({','.join(AUTOCAST_CHOICES)}).")
@click.option("--channels-last", is_flag=True, help="PyTorch: channels-last memory format.")
@click.option("--cuda-graphs", is_flag=True, help="PyTorch on CUDA: capture and replay CUDA graphs.")
@click.option("--compile", "compile_", is_flag=True, help="PyTorch: torch.compile (Inductor).")
@click.option("--openvino-fp32", is_flag=True, help="On the CPU, time FP32 ONNX models with both FP32 runtimes: the one auto chose (measured once per CPU and model) and the other (OpenVINO with f32 set, or ONNX Runtime). INT8 models get OpenVINO rows on the CPU anyway.")
@click.option("--openvino-bf16", is_flag=True, help="Also time FP32 ONNX models with OpenVINO in BF16, as bf16 rows (CPUs with BF16 only).")
@click.option("--cost", is_flag=True, help="Also print parameters/GFLOPs of each artifact and the model-option cost table.")
@click.option("--triton", "triton_urls", multiple=True, metavar="URL",
              help="Also time a live Triton endpoint (http://HOST:PORT or grpc://HOST:PORT, optionally /MODEL): encoded images from concurrent "
                   "clients, with Triton's own queue/compute split; ARTIFACTs then also get in-process Predictor rows. Repeatable.")
@click.option("--triton-model", default=field_default(BenchConfig, "triton_model"), show_default=True, help="The served ensemble a --triton URL without /MODEL calls.")
@click.option("--concurrency", default=",".join(map(str, field_default(BenchConfig, "concurrency"))), show_default=True, metavar="LIST", help="Concurrent clients per served level, e.g. 1,4,8.")
@click.option("--cpp", "cpp", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="A built dacovid_infer (cpp/): instead of the usual table, time it end to end beside Python's Predictor (both on OpenVINO) "
                   "on the first --cpp-images files of --images, at each --batch, with --iterations timed passes (default {}).".format(field_default(CppBenchConfig, "repeats")))
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None, help="--cpp: the folder of image files to time.")
@click.option("--cpp-images", type=int, default=field_default(CppBenchConfig, "count"), show_default=True, help="--cpp: how many images of --images are timed.")
@click.option("--json", "json_out", type=_OUT, default=None, help="Write the records and environment as JSON.")
@click.option("--csv", "csv_out", type=_OUT, default=None, help="Write the records as CSV.")
@click.option("--plot", "plot_out", type=_OUT, default=None, help="Write a latency/throughput-versus-batch PNG.")
@click.option("--seed", type=int, default=field_default(BenchConfig, "seed"), show_default=True, help="Seed of the synthetic input images.")
@click.option("--no-progress", is_flag=True, help="No progress bars on stderr.")
@verbosity_options
@handle_errors
def bench(
    artifacts: tuple[Path, ...],
    backend: str,
    device: str,
    batch: str,
    image_size: int | None,
    warmup: int,
    iterations: int | None,
    duration: float | None,
    threads: int | None,
    autocast: str | None,
    channels_last: bool,
    cuda_graphs: bool,
    compile_: bool,
    openvino_fp32: bool,
    openvino_bf16: bool,
    cost: bool,
    triton_urls: tuple[str, ...],
    triton_model: str,
    concurrency: str,
    cpp: Path | None,
    images: Path | None,
    cpp_images: int,
    json_out: Path | None,
    csv_out: Path | None,
    plot_out: Path | None,
    seed: int,
    no_progress: bool,
) -> None:
    """Time ARTIFACT... (checkpoints, ONNX models, TensorRT engines) and --triton endpoints; print a markdown table.

    GPU work is timed with CUDA events (compute-only and end-to-end series);
    CPU work with a monotonic clock. Percentiles follow trtexec (nearest rank).
    """
    from dacovid_export.bench.config import parse_int_list
    from dacovid_export.bench.report import format_markdown
    from dacovid_export.bench.run import bench_to_files

    if cpp is not None:
        _bench_cpp(cpp, artifacts, images, parse_int_list(batch, "--batch"), iterations, cpp_images)
        return

    config = BenchConfig(
        backend=backend,
        device=device,
        batch_sizes=parse_int_list(batch, "--batch"),
        image_size=image_size,
        warmup=warmup,
        iterations=iterations,
        duration_s=duration,
        threads=threads,
        autocast=tuple(p.strip() for p in autocast.split(",")) if autocast else (),
        channels_last=channels_last,
        cuda_graphs=cuda_graphs,
        compile=compile_,
        cost=cost,
        openvino_fp32=openvino_fp32,
        openvino_bf16=openvino_bf16,
        seed=seed,
        progress=not no_progress,
        triton=triton_urls,
        triton_model=triton_model,
        concurrency=parse_int_list(concurrency, "--concurrency"),
    )
    result, written = bench_to_files([str(a) for a in artifacts], config, json=json_out, csv=csv_out, plot=plot_out)
    click.echo(format_markdown(result), nl=False)
    for path in written:
        click.echo(f"wrote {path}", err=True)


def _bench_cpp(cpp: Path, artifacts: tuple[Path, ...], images: Path | None, batches: list[int], iterations: int | None, count: int) -> None:
    from dacovid_export.bench.cpp import bench_cpp, format_cpp_table
    from dacovid_export.core.errors import UserInputError

    if len(artifacts) != 1 or images is None:
        raise UserInputError("--cpp times one ONNX model on image files: give exactly one ARTIFACT and --images DIR")
    config = CppBenchConfig(str(cpp), str(artifacts[0]), str(images), tuple(batches), iterations or field_default(CppBenchConfig, "repeats"), count)
    click.echo(format_cpp_table(bench_cpp(config), artifacts[0]), nl=False)


def main() -> None:
    bench(prog_name="dacovid-bench")

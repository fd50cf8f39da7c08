"""``dacovid-export`` (also ``python -m dacovid_export``): export, engines, parity, Triton, pipeline."""

from __future__ import annotations

import click

from dacovid_export.cli.bench_cmd import bench
from dacovid_export.cli.bf16_cmd import bf16_guard
from dacovid_export.cli.check_cmd import check
from dacovid_export.cli.common import OneLineErrorsGroup, verbosity_options
from dacovid_export.cli.onnx_cmd import onnx
from dacovid_export.cli.pipeline_cmd import pipeline
from dacovid_export.cli.serve_cmd import serve, serve_env
from dacovid_export.cli.train_cmd import train
from dacovid_export.cli.triton_cmd import triton
from dacovid_export.cli.trt_cmd import trt
from dacovid_export.core.versions import __version__

__all__ = ["cli", "main"]


@click.group(cls=OneLineErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dacovid-export")
@verbosity_options
def cli() -> None:
    """DA-COVID Net from a PyTorch checkpoint to ONNX and TensorRT, with proof of parity and speed."""


for _command in (onnx, check, trt, triton, serve, serve_env, pipeline, train, bench, bf16_guard):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="dacovid-export")

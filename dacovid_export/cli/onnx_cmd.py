"""`dacovid-export onnx`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["onnx"]


@click.command(name="onnx", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def onnx() -> None:
    """Not yet implemented."""
    not_yet_implemented("onnx")

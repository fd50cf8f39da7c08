"""`dacovid-export trt`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["trt"]


@click.command(name="trt", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def trt() -> None:
    """Not yet implemented."""
    not_yet_implemented("trt")

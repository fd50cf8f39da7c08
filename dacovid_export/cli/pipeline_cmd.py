"""`dacovid-export pipeline`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["pipeline"]


@click.command(name="pipeline", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def pipeline() -> None:
    """Not yet implemented."""
    not_yet_implemented("pipeline")

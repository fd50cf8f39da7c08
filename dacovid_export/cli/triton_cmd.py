"""`dacovid-export triton`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["triton"]


@click.command(name="triton", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def triton() -> None:
    """Not yet implemented."""
    not_yet_implemented("triton")

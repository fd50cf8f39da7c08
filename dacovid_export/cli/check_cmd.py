"""`dacovid-export check`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["check"]


@click.command(name="check", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def check() -> None:
    """Not yet implemented."""
    not_yet_implemented("check")

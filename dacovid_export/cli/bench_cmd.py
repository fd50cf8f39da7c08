"""`dacovid-bench`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["bench", "main"]


@click.command(name="bench", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def bench() -> None:
    """Not yet implemented."""
    not_yet_implemented("bench")


def main() -> None:
    bench(prog_name="dacovid-bench")

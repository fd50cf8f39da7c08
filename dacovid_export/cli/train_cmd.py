"""`dacovid-train`."""

from __future__ import annotations

import click

from dacovid_export.cli.common import not_yet_implemented

__all__ = ["train", "main"]


@click.command(name="train", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train() -> None:
    """Not yet implemented."""
    not_yet_implemented("train")


def main() -> None:
    train(prog_name="dacovid-train")

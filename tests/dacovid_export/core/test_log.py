"""The one logger family: stderr lines at the default verbosity, -v/-q from the CLI."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from dacovid_export.cli.common import verbosity_options
from dacovid_export.core.log import (
    get_logger,
    set_verbosity,
    showing_progress,
    verbosity_level,
)


@pytest.fixture(autouse=True)
def _default_verbosity() -> Iterator[None]:
    yield
    set_verbosity()


def test_library_lines_reach_the_current_stderr_bare(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("bench").info("skipped a.onnx: no GPU")
    get_logger("bench").debug("detail")
    assert capsys.readouterr().err == "skipped a.onnx: no GPU\n"
    assert get_logger("bench").name == "dacovid_export.bench"


def test_levels() -> None:
    assert verbosity_level() == logging.INFO
    assert verbosity_level(verbose=1) == logging.DEBUG
    assert verbosity_level(quiet=1) == logging.WARNING
    assert verbosity_level(quiet=5) == logging.ERROR
    set_verbosity(quiet=1)
    assert not showing_progress()
    set_verbosity()
    assert showing_progress()


@click.group()
@verbosity_options
def _group() -> None:
    pass


@_group.command()
@verbosity_options
def say() -> None:
    log = get_logger("cli-test")
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["say"], ["info line", "warning line"]),
        (["-q", "say"], ["warning line"]),
        (["say", "-q"], ["warning line"]),
        (["-v", "say"], ["debug line", "info line", "warning line"]),
        (["-q", "say", "-v"], ["info line", "warning line"]),  # counts add up across group and command
        (["-qq", "say"], []),
    ],
)
def test_cli_verbosity(args: list[str], shown: list[str]) -> None:
    result = CliRunner().invoke(_group, args)
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line] == shown


def test_commands_offer_verbosity() -> None:
    from dacovid_export.cli.bench_cmd import bench
    from dacovid_export.cli.main import cli
    from dacovid_export.cli.train_cmd import train

    for command in (cli, bench, train):
        names = {opt for p in command.params for opt in p.opts}
        assert {"-v", "-q"} <= names, command.name

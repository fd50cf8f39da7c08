"""Option groups: defaults read from the library's dataclasses, and each group's values become one config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest

from dacovid_export.calibration.qat import QatConfig
from dacovid_export.cli.common import QatFlags, field_default, precision_options
from dacovid_export.core.errors import UserInputError
from dacovid_export.engine.config import EngineBuildConfig
from tests.helpers.cli import invoke


def test_field_default_reads_the_library() -> None:
    def library(x: int, *, size: int = 7) -> None: ...

    assert field_default(EngineBuildConfig, "workspace_gib") == 4.0
    assert field_default(QatConfig(epochs=5), "epochs") == 5  # an instance: a command's own defaults
    assert field_default(library, "size") == 7
    with pytest.raises(KeyError):
        field_default(library, "x")


def test_every_cli_default_is_the_librarys() -> None:
    """The commands' --help defaults are the dataclasses' (one home: change the dataclass, the CLI follows)."""
    from dacovid_export.bench.config import BenchConfig
    from dacovid_export.cli.bench_cmd import bench
    from dacovid_export.cli.trt_cmd import trt

    params = {p.name: p.default for p in trt.params}
    assert (params["min_batch"], params["max_batch"], params["workspace"], params["opt_level"]) == (1, 8, 4.0, 3)
    params = {p.name: p.default for p in bench.params}
    assert params["warmup"] == BenchConfig().warmup and params["seed"] == BenchConfig().seed


def test_qat_flags_without_qat_are_refused_and_with_it_become_one_config() -> None:
    flags = QatFlags(qat=False, qat_epochs=3, qat_lr=None, qat_batch_size=None, qat_device=None, train_data=None)
    with pytest.raises(UserInputError, match="--qat-epochs given without --qat"):
        flags.config(seed=0)
    assert dataclasses.replace(flags, qat_epochs=None).config(seed=0) is None
    config = dataclasses.replace(flags, qat=True).config(seed=4)
    assert config == QatConfig(epochs=3, seed=4)


def test_precision_options_reach_the_command_as_one_record(synthetic_dir: Path) -> None:
    seen = []

    @click.command()
    @precision_options("help")
    def command(step) -> None:
        seen.append(step.config("int8", seed=1, cache_dir=None, atol=None, rtol=None))

    result = invoke(command, ["--calib-data", synthetic_dir, "--calib-size", "64", "--min-agreement", "0.9"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.precision, config.calib_data, config.calib_size, config.min_agreement, config.qat, config.seed) == (
        "int8", synthetic_dir, 64, 0.9, False, 1,
    )


def test_pipeline_refuses_qat_options_without_qat(tmp_path: Path) -> None:
    from dacovid_export.cli.main import cli
    from tests.helpers.cli import assert_one_line_error

    result = invoke(cli, ["pipeline", "--out", tmp_path / "o", "--qat-epochs", "2"])
    assert_one_line_error(result, "--qat-epochs given without --qat")

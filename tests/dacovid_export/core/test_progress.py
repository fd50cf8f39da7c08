"""StepTimer: seconds per step, numbered lines on stderr (the stage's logger), keys, the disabled case."""

from __future__ import annotations

import pytest

from dacovid_export.core.progress import StepTimer


def test_numbered_lines_on_stderr_and_seconds_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    timer = StepTimer(True, total=2)
    with timer.step("inputs"):
        timer.note("embedded default")
    with timer.step("export"):
        pass
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[1/2] inputs ..."
    assert err[1] == "      embedded default"
    assert err[2].startswith("[1/2] inputs: ") and err[2].endswith(" s")
    assert err[3] == "[2/2] export ..." and err[4].startswith("[2/2] export: ")
    assert list(timer.seconds) == ["inputs", "export"]
    assert all(s >= 0 for s in timer.seconds.values())


def test_log_detail_decimals_and_no_numbers_without_total(capsys: pytest.CaptureFixture[str]) -> None:
    timer = StepTimer(decimals=2, stage="engine")
    with timer.step("parse", "model.onnx"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "parse ... model.onnx"
    name, _, rest = lines[1].partition(": ")
    assert name == "parse" and rest.endswith(" s") and len(rest.split()[0].split(".")[1]) == 2


def test_start_stop_records_under_key_and_disabled_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    timer = StepTimer(False, total=3)
    timer.start("torch.onnx export (dynamo)", key="export")
    seconds = timer.stop()
    assert timer.seconds == {"export": seconds}
    timer.note("hidden")
    assert capsys.readouterr().err == ""
    with pytest.raises(RuntimeError):
        timer.stop()


def test_step_is_recorded_when_the_block_raises() -> None:
    timer = StepTimer(False)
    with pytest.raises(ValueError):
        with timer.step("fails"):
            raise ValueError("boom")
    assert "fails" in timer.seconds


def test_bar_mode_counts_steps_and_prints_no_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with StepTimer(True, total=2, bar=True) as timer:
        with timer.step("a"):
            pass
        timer.start("b", key="bee")
        timer.stop()
    assert set(timer.seconds) == {"a", "bee"}
    assert "a ..." not in capsys.readouterr().err

"""The INT8 calibration cache: capped, least recently used out first, and it says where it is and how big."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dacovid_export.calibration.cache import (
    DEFAULT_MAX_GB,
    MAX_GB_ENV,
    CalibrationCache,
    cache_max_bytes,
)
from dacovid_export.core.errors import UserInputError


def _entries(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.onnx"))


def test_least_recently_used_entries_leave_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache = CalibrationCache(tmp_path, max_bytes=2_600)  # room for two ~1.2 kB entries
    for key in ("a", "b"):
        assert cache.store(key, b"x" * 1_000, {"k": key}) == tmp_path / f"{key}.onnx"
    old = time.time() - 60
    os.utime(tmp_path / "a.json", (old, old))
    os.utime(tmp_path / "b.json", (old + 1, old + 1))
    assert cache.lookup("a") == tmp_path / "a.onnx"  # a use: "b" is now the least recently used
    cache.store("c", b"y" * 1_000, {"k": "c"})
    assert _entries(tmp_path) == ["a", "c"]
    err = capsys.readouterr().err
    assert f"calibration cache: {tmp_path} holds 2 entries" in err and "1 least recently used removed" in err
    assert MAX_GB_ENV in err


def test_an_entry_over_the_cap_is_not_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert CalibrationCache(tmp_path, max_bytes=10).store("big", b"x" * 100, {}) is None
    assert _entries(tmp_path) == [] and "not cached" in capsys.readouterr().err


@pytest.mark.parametrize("value, expected", [(None, int(DEFAULT_MAX_GB * 1e9)), ("0.5", 500_000_000), ("0", 0)])
def test_the_cap_is_configurable(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int) -> None:
    if value is None:
        monkeypatch.delenv(MAX_GB_ENV, raising=False)
    else:
        monkeypatch.setenv(MAX_GB_ENV, value)
    assert cache_max_bytes() == expected


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_a_bad_cap_quotes_the_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from dacovid_export.calibration.config import PrecisionConfig

    monkeypatch.setenv(MAX_GB_ENV, value)
    with pytest.raises(UserInputError, match=f"{MAX_GB_ENV}='{value}'"):
        PrecisionConfig(precision="int8", calib_data=Path("."))  # found with the options, before any work

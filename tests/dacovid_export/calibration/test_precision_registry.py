"""The precision table (artifacts.info.PRECISION_SPECS) is the one list: tolerances, steps, guards and flags follow it."""

from __future__ import annotations

from dacovid_export.artifacts.info import ENGINE_PRECISIONS, PRECISION_SPECS, PRECISIONS
from dacovid_export.calibration.convert import (
    GUARD_KEYS,
    GUARD_REPORTS,
    PRECISION_STEPS,
)
from dacovid_export.cli.main import cli
from dacovid_export.export.config import DEFAULT_TOLERANCES


def test_every_precision_has_one_entry_and_the_derived_tables_follow_it() -> None:
    assert tuple(PRECISION_SPECS) == PRECISIONS
    assert DEFAULT_TOLERANCES == {name: (s.atol, s.rtol) for name, s in PRECISION_SPECS.items()}
    assert set(PRECISION_STEPS) == {name for name, s in PRECISION_SPECS.items() if s.made_by_step}
    assert ENGINE_PRECISIONS == ("fp32", "fp16", "int8") and "bf16" not in ENGINE_PRECISIONS
    guarded = {s.guard.lower() for s in PRECISION_SPECS.values() if s.guard is not None}
    assert {k.removesuffix("_guard") for k in GUARD_KEYS} == guarded == {"fp16", "int8", "bf16"}
    assert [k.METADATA_KEY for k in GUARD_REPORTS] == list(GUARD_KEYS)


def test_the_cli_choices_come_from_the_table() -> None:
    onnx = {p.name: p for p in cli.commands["onnx"].params}
    assert tuple(onnx["precision"].type.choices) == PRECISIONS
    trt_flags = {p.name for p in cli.commands["trt"].params if getattr(p, "is_flag", False) and p.name in PRECISIONS}
    assert trt_flags == set(ENGINE_PRECISIONS)

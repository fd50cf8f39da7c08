"""The precision registry (calibration.precisions) is the one list: tolerances, steps, guards and flags follow it."""

from __future__ import annotations

import pytest

from dacovid_export.calibration.precisions import (
    PrecisionKind,
    engine_precisions,
    guard_report_types,
    precision_names,
    precision_of,
    register_precision,
    registered,
)
from dacovid_export.calibration.step_metadata import GUARD_KEYS
from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.export.config import FP32_TOLERANCE
from dacovid_export.parity.config import ParityConfig


def test_every_precision_is_registered_once_in_listing_order() -> None:
    assert precision_names() == ("fp32", "fp16", "int8", "bf16")
    assert precision_of("fp32").tolerance == FP32_TOLERANCE  # the export's own self-check: one home
    assert engine_precisions() == ("fp32", "fp16", "int8") and "bf16" not in engine_precisions()
    assert [p.name for p in registered() if p.made_by_step] == ["fp16", "int8", "bf16"]
    guarded = {str(p.guard).lower() for p in registered() if p.guard is not None}
    assert {k.removesuffix("_guard") for k in GUARD_KEYS} == guarded == {"fp16", "int8", "bf16"}
    assert [k.METADATA_KEY for k in guard_report_types()] == list(GUARD_KEYS)
    assert ParityConfig().precisions == precision_names()
    assert ParityConfig().tolerance_for("int8") == precision_of("int8").parity


def test_a_second_class_of_a_registered_name_is_refused_and_unknown_names_list_the_known() -> None:
    class Again(PrecisionKind):
        name = "int8"
        order = 99

    with pytest.raises(RuntimeError, match="registered twice"):
        register_precision(Again)
    with pytest.raises(UserInputError, match="'fp64'.*fp32, fp16, int8, bf16"):
        precision_of("fp64")


def test_the_cli_choices_and_help_come_from_the_registry() -> None:
    onnx = {p.name: p for p in cli.commands["onnx"].params}
    assert tuple(onnx["precision"].type.choices) == precision_names()
    for kind in registered():
        if kind.made_by_step:
            assert kind.summary in str(onnx["precision"].help)
    trt = {p.name: p for p in cli.commands["trt"].params if getattr(p, "is_flag", False) and p.name in precision_names()}
    assert set(trt) == set(engine_precisions())
    assert all(trt[name].help == precision_of(name).engine_help for name in trt)


def test_a_new_precision_is_one_registered_class_that_every_consumer_sees() -> None:
    """"INT8 weights only" on paper, registered in a fresh process before the CLI is built: the onnx choices, the trt
    flag, check's tolerance flags, parity's criteria, the engine config and the pipeline's steps all take it up with
    nothing else edited (its ``make`` is the one method a real module would add)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent('''
        from dacovid_export.calibration.precisions import PrecisionKind, Tolerance, register_precision

        @register_precision
        class Int8Weights(PrecisionKind):
            name, order, summary = "int8w", 4, "int8w: INT8 weights, FP32 activations"
            atol, rtol = 1e-2, 2.5e-1
            parity = Tolerance(min_agreement=0.97)
            requires_qdq = True
            engine_help = "INT8-weights engine."
            pipeline_step = "ONNX INT8 weights conversion"

        from dacovid_export.cli.main import cli
        from dacovid_export.engine.config import EngineBuildConfig
        from dacovid_export.parity.config import ParityConfig
        from dacovid_export.pipeline.exports import ONNX_STEPS

        onnx = {p.name: p for p in cli.commands["onnx"].params}
        trt = {p.name: p for p in cli.commands["trt"].params}
        check = {p.name for p in cli.commands["check"].params}
        assert "int8w" in onnx["precision"].type.choices and "int8w: INT8 weights" in onnx["precision"].help
        assert trt["int8w"].help == "INT8-weights engine."
        assert "int8w_min_agreement" in check
        assert ParityConfig().tolerance_for("int8w").min_agreement == 0.97
        assert ParityConfig().with_overrides({"int8w_min_agreement": 0.99}).tolerance_for("int8w").min_agreement == 0.99
        assert EngineBuildConfig(precision="int8w").precision == "int8w"
        assert ONNX_STEPS[-1] == "ONNX INT8 weights conversion"
        print("seen everywhere")
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "seen everywhere" in done.stdout, done.stderr[-3000:]

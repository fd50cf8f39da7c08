"""FP16 accuracy guard: AutoCast measured against FP32 on unseen images; the costly node kept FP32, or a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from tests.helpers.guard_toy import FP16_HARD_NODE, make_fp16_toy, toy_set

onnx = pytest.importorskip("onnx")
pytest.importorskip("modelopt.onnx.autocast")
pytest.importorskip("onnxruntime")

from dacovid_export.calibration.config import PrecisionConfig  # noqa: E402
from dacovid_export.calibration.fp16_guard import (  # noqa: E402
    DEFAULT_FP16_MIN_AGREEMENT,
    Fp16GuardConfig,
    Fp16GuardFailedError,
    guarded_convert_fp16,
)
from dacovid_export.calibration.sensitivity import onnx_logits  # noqa: E402
from dacovid_export.data.agreement import measure_agreement  # noqa: E402


@pytest.fixture(scope="module")
def fp16_toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fp16guard")
    return {
        "model": make_fp16_toy(root / "toy.onnx"),
        "calibration": toy_set(16, seed=1, name="calibration"),
        "validation": toy_set(48, seed=2, name="validation"),
        "root": root,
    }


def test_the_costly_node_is_kept_fp32_and_the_target_holds(fp16_toy: dict) -> None:
    out = fp16_toy["root"] / "toy.fp16.onnx"
    images = fp16_toy["validation"].array
    labels = onnx_logits(onnx.load(str(fp16_toy["model"])), images).argmax(axis=1)  # FP32 is right on every image
    result = guarded_convert_fp16(
        fp16_toy["model"], out, validation=fp16_toy["validation"], calibration=fp16_toy["calibration"],
        config=Fp16GuardConfig(min_fp16_conv_share=0.0), progress=False, labels=labels,
    )
    guard = result.guard.to_dict()
    assert type(result.guard).from_dict(guard) == result.guard  # the dict form reads back as the same report
    assert guard["before"]["agreement"] < 0.9  # plain AutoCast changes answers on this model
    assert guard["after"]["agreement"] >= DEFAULT_FP16_MIN_AGREEMENT and guard["passed"]
    assert guard["kept_fp32_nodes"] == [FP16_HARD_NODE]
    assert guard["fp16_convs"] == 0 and guard["convs"] == 1
    assert [s["kept_fp32"] for s in guard["steps"]] == [0, 1]
    # with labels, accuracy beside agreement: here it equals agreement, since the labels are FP32's answers
    assert guard["accuracy"] == {"images": 48, "fp32": 1.0, "before": guard["before"]["agreement"], "after": guard["after"]["agreement"]}
    assert "FP16 guard: accuracy on the 48 labelled validation images: FP32 100.00%, FP16 " in "\n".join(result.guard.lines())
    # the written file is the judged one: its agreement under ONNX Runtime is the report's
    images = fp16_toy["validation"].array
    reference = onnx_logits(onnx.load(str(fp16_toy["model"])), images)
    assert measure_agreement(reference, onnx_logits(onnx.load(str(out)), images)).agreement == guard["after"]["agreement"]
    weights = {i.name: i.data_type for i in onnx.load(str(out)).graph.initializer}
    assert weights["conv.weight"] == onnx.TensorProto.FLOAT


def test_fp16_candidates_are_ranked_by_error_share_in_one_pass(fp16_toy: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranking compares AutoCast's model with FP32 once (not per node); the costly convolution comes first."""
    from dacovid_export.calibration import fp16_guard, layer_error

    calls: list[tuple[list[str], int]] = []
    ranked: list[list[str]] = []

    def spy(reference, reduced, images, nodes, **kwargs):
        calls.append((list(nodes), len(images)))
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in reduced.graph.initializer)  # AutoCast's model
        return layer_error.layer_errors(reference, reduced, images, nodes, **kwargs)

    def rank_spy(errors, nodes):
        ranked.append(layer_error.rank_by_error_share(errors, nodes))
        return ranked[-1]

    monkeypatch.setattr(fp16_guard, "layer_errors", spy)
    monkeypatch.setattr(fp16_guard, "rank_by_error_share", rank_spy)
    result = guarded_convert_fp16(
        fp16_toy["model"], fp16_toy["root"] / "ranked.fp16.onnx", validation=fp16_toy["validation"],
        calibration=fp16_toy["calibration"], config=Fp16GuardConfig(min_fp16_conv_share=0.0, ranking_images=20),
        progress=False,
    )
    assert len(calls) == 1 and calls[0][1] == 20 and FP16_HARD_NODE in calls[0][0] and len(calls[0][0]) > 1
    assert ranked[0][0] == FP16_HARD_NODE and result.guard.kept_fp32 == (FP16_HARD_NODE,)


def test_the_fp16_conv_floor_refuses_with_the_table_and_writes_nothing(fp16_toy: dict) -> None:
    out = fp16_toy["root"] / "refused.fp16.onnx"
    with pytest.raises(Fp16GuardFailedError) as caught:
        guarded_convert_fp16(
            fp16_toy["model"], out, validation=fp16_toy["validation"], calibration=fp16_toy["calibration"], progress=False
        )
    message = str(caught.value)
    assert "nothing was written" in message and "99.50%" in message and "AutoCast" in message
    assert caught.value.report.after.agreement < DEFAULT_FP16_MIN_AGREEMENT
    assert not out.exists()


def test_validation_images_must_be_unseen(fp16_toy: dict) -> None:
    with pytest.raises(UserInputError, match="also a calibration image"):
        guarded_convert_fp16(
            fp16_toy["model"], fp16_toy["root"] / "x.onnx", validation=fp16_toy["calibration"],
            calibration=fp16_toy["calibration"], progress=False,
        )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"min_agreement": 1.5}, "min_agreement=1.5"),
        ({"min_fp16_conv_share": -0.1}, "min_fp16_conv_share=-0.1"),
        ({"ranking_images": 0}, "ranking_images=0"),
    ],
)
def test_fp16_guard_config_quotes_the_bad_value(options: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        Fp16GuardConfig(**options)


def test_default_target_is_checks_fp16_threshold() -> None:
    from dacovid_export.parity.config import ParityConfig

    assert PrecisionConfig(precision="fp16").guard_options().min_agreement == DEFAULT_FP16_MIN_AGREEMENT
    assert DEFAULT_FP16_MIN_AGREEMENT == ParityConfig().tolerance_for("fp16").min_agreement  # a guarded model passes check


def test_precision_config_fp16_guard_rules(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="without images"):
        PrecisionConfig(precision="fp16", min_agreement=0.99)
    with pytest.raises(UserInputError, match="FP16/INT8/BF16 option"):
        PrecisionConfig(precision="fp32", min_agreement=0.99)
    with pytest.raises(UserInputError, match="min_agreement=2"):
        PrecisionConfig(precision="fp16", calib_data=tmp_path, min_agreement=2)
    assert PrecisionConfig(precision="fp16", validation_data=tmp_path).guarded
    assert PrecisionConfig(precision="fp16", calib_data=tmp_path, min_agreement=0.9).guard_options().min_agreement == 0.9
    assert not PrecisionConfig(precision="fp16").guarded


def test_cli_fp16_validation_folder_equal_to_calibration_is_refused_before_export(
    tmp_path: Path, tiny_checkpoint: Path, synthetic_dir: Path
) -> None:
    """The FP16 guard's split rules are INT8's: validation images calibration saw are one line, exit 2, no file."""
    from dacovid_export.cli.main import cli
    from tests.helpers.cli import invoke

    out = tmp_path / "tiny.fp16.onnx"
    args = ["onnx", str(tiny_checkpoint), "-o", str(out), "--precision", "fp16", "--calib-data", str(synthetic_dir),
            "--calib-size", "8", "--min-agreement", "1.0", "--validation-data", str(synthetic_dir)]
    result = invoke(cli, args)
    # validation images equal to the calibration folder are refused before any export (exit 2, one line)
    assert result.exit_code == 2 and "also a calibration image" in result.output
    assert not out.exists()

"""Parity verdict: library (run_parity, judge_logits, ParityConfig) and `dacovid-export check`."""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.fileio import sha256_file
from dacovid_export.parity.compare import judge_logits
from dacovid_export.parity.config import ParityConfig, Tolerance
from dacovid_export.parity.run import run_parity
from tests.helpers.cli import invoke


@pytest.fixture(scope="module")
def perturbed_onnx(tiny_fp32_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FP32 export with its classifier weight scaled by 1.5: same metadata, wrong numbers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tiny_fp32_onnx))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    weight = next(i for i in model.graph.initializer if i.name == gemm.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    path = tmp_path_factory.mktemp("perturbed") / "perturbed.onnx"
    onnx.save(model, str(path))
    return path


def _check(*args: str):
    return invoke(cli, ["check", "--no-progress", *args])


# ------------------------------------------------------------------------ library


def test_fp32_onnx_passes_on_synthetic_inputs(tiny_checkpoint: Path, tiny_fp32_onnx: Path) -> None:
    report = run_parity(tiny_checkpoint, [tiny_fp32_onnx], synthetic_count=5, batch_size=2, progress=False)
    assert report and report.passed
    (model,) = report.models
    assert model.count == 5 and model.top1_agreement == 1.0
    assert model.max_rel_logit_diff is not None and model.max_rel_logit_diff < 1e-4
    assert model.classification is None and report.reference.classification is None
    assert report.inputs["mode"] == "synthetic" and report.inputs["count"] == 5
    assert {c.name for c in model.checks} == {"top-1 agreement", "max |logit diff| / logit scale", "max |prob diff|"}
    assert "PASS" in report.format_table() and "synthetic" in report.format_table()


def test_synthetic_inputs_do_not_depend_on_batch_size(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    toy = make_toy_onnx(tmp_path / "toy.onnx")
    loose = ParityConfig().with_tolerance("fp32", Tolerance(min_agreement=0.0))
    a = run_parity(tiny_checkpoint, [toy], synthetic_count=3, batch_size=1, config=loose, progress=False)
    b = run_parity(tiny_checkpoint, [toy], synthetic_count=3, batch_size=3, config=loose, progress=False)
    assert a.models[0].max_abs_logit_diff == pytest.approx(b.models[0].max_abs_logit_diff, rel=1e-5)
    assert a.reference.logit_scale == pytest.approx(b.reference.logit_scale, rel=1e-5)


def test_labelled_folder_metrics(tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path) -> None:
    report = run_parity(tiny_checkpoint, [tiny_fp32_onnx], images=synthetic_dir, batch_size=8, progress=False)
    assert report
    ref, model = report.reference.classification, report.models[0].classification
    assert ref is not None and model is not None
    assert sum(map(sum, model.confusion)) == 24 and model.support == (8, 8, 8)
    assert model.confusion == ref.confusion  # FP32: identical predictions
    assert report.models[0].accuracy_drop == 0.0
    assert report.inputs["per_class"] == {"Normal": 8, "Pneumonia": 8, "COVID-19": 8}
    table = report.format_table()
    assert "precision  recall" in table and "reference tiny.pt" in table
    data = report.to_dict()
    json.dumps(data)  # JSON-serialisable as it is
    assert data["models"][0]["classification"]["per_class"]["COVID-19"]["support"] == 8


def test_perturbed_model_fails(tiny_checkpoint: Path, tiny_fp32_onnx: Path, perturbed_onnx: Path) -> None:
    report = run_parity(tiny_checkpoint, [tiny_fp32_onnx, perturbed_onnx], synthetic_count=4, batch_size=4, progress=False)
    assert not report
    good, bad = report.models
    assert good.passed and not bad.passed
    assert report.failed_models == [bad]
    assert any("logit" in reason for reason in bad.failures)
    assert bad.max_rel_logit_diff > 0.1


def test_nan_model_fails_and_others_are_still_compared(tiny_checkpoint: Path, tiny_fp32_onnx: Path, make_toy_onnx, tmp_path: Path) -> None:
    nan = make_toy_onnx(tmp_path / "nan.onnx", scale=float("nan"))
    report = run_parity(tiny_checkpoint, [nan, tiny_fp32_onnx], synthetic_count=3, batch_size=3, progress=False)
    bad, good = report.models
    assert not report and good.passed
    assert bad.error is not None and "NaN" in bad.error and "nan.onnx" in bad.error
    assert bad.top1_agreement is None
    json.dumps(report.to_dict())


def test_class_name_mismatch_is_an_input_error(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    other = make_toy_onnx(tmp_path / "other.onnx", class_names=("A", "B", "C"))
    with pytest.raises(UserInputError, match="class names"):
        run_parity(tiny_checkpoint, [other], synthetic_count=2, progress=False)


def test_image_size_mismatch_is_an_input_error(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    other = make_toy_onnx(tmp_path / "other.onnx", image_size=96)
    with pytest.raises(UserInputError, match="preprocessing image_size 96"):
        run_parity(tiny_checkpoint, [other], synthetic_count=2, progress=False)


def test_source_mismatch_fails_unless_allowed(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    toy = make_toy_onnx(tmp_path / "toy.onnx", source_sha256="0" * 64)
    loose = ParityConfig().with_tolerance("fp32", Tolerance(min_agreement=0.0))
    strict = run_parity(tiny_checkpoint, [toy], synthetic_count=2, config=loose, progress=False)
    assert not strict and any("source" in r for r in strict.models[0].failures)
    allowed = run_parity(
        tiny_checkpoint, [toy], synthetic_count=2, config=dataclasses.replace(loose, require_same_source=False), progress=False
    )
    assert allowed and allowed.models[0].warnings and "source_sha256 000000000000" in allowed.models[0].warnings[0]


def test_tolerance_follows_model_precision(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    toy = make_toy_onnx(tmp_path / "toy.onnx", precision="int8")
    report = run_parity(tiny_checkpoint, [toy], synthetic_count=3, progress=False, config=ParityConfig().with_tolerance("int8", Tolerance(min_agreement=0.0)))
    # int8 bounds neither logits nor probabilities by default: only agreement is checked here
    assert report and [c.name for c in report.models[0].checks] == ["top-1 agreement"]
    unknown = make_toy_onnx(tmp_path / "fp8.onnx", precision="fp8")
    with pytest.raises(UserInputError, match="no parity tolerance for precision 'fp8'"):
        run_parity(tiny_checkpoint, [unknown], synthetic_count=2, progress=False)


def test_reference_must_be_a_checkpoint(tiny_fp32_onnx: Path) -> None:
    with pytest.raises(UserInputError, match="must be a PyTorch checkpoint"):
        run_parity(tiny_fp32_onnx, [tiny_fp32_onnx], synthetic_count=2, progress=False)


def test_judge_logits_numbers_and_accuracy_drop() -> None:
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0], [1.0, 0.0, 0.0]])
    out = ref.copy()
    out[3] = [0.0, 1.5, 0.0]  # one of four changes class
    labels = np.array([0, 1, 2, 0])
    numbers, checks = judge_logits(ref, out, ParityConfig().tolerance_for("int8"), labels=labels, class_names=("a", "b", "c"))
    assert numbers["top1_agreement"] == 0.75 and numbers["disagreements"] == 1
    assert numbers["max_abs_logit_diff"] == 1.5 and numbers["logit_scale"] == 4.0
    assert numbers["max_rel_logit_diff"] == pytest.approx(0.375)
    assert numbers["accuracy_drop"] == pytest.approx(0.25)
    by_name = {c.name: c for c in checks}
    assert not by_name["top-1 agreement"].passed and not by_name["accuracy drop"].passed
    same, same_checks = judge_logits(ref, ref, ParityConfig().tolerance_for("fp32"))
    assert same["max_abs_prob_diff"] == 0.0 and all(c.passed for c in same_checks)


def test_config_validation_and_overrides() -> None:
    with pytest.raises(UserInputError, match="min_agreement=1.5"):
        Tolerance(min_agreement=1.5)
    with pytest.raises(UserInputError, match="max_prob_diff=-1"):
        Tolerance(min_agreement=1.0, max_prob_diff=-1)
    config = ParityConfig().with_overrides({"int8_min_agreement": 0.99, "fp16_max_logit_rel": 0.1})
    assert config.tolerance_for("int8").min_agreement == 0.99 and config.tolerance_for("int8").max_accuracy_drop == 0.01
    assert config.tolerance_for("fp16").max_logit_rel == 0.1 and config.tolerance_for("fp16").min_agreement == 0.995
    with pytest.raises(UserInputError, match="unknown tolerance 'fp64_min_agreement'"):
        ParityConfig().with_overrides({"fp64_min_agreement": 1.0})


# ---------------------------------------------------------------------------- CLI


def test_cli_pass_writes_json_and_pngs(tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report" / "parity.json"
    pngs = tmp_path / "cm"
    result = _check("--checkpoint", str(tiny_checkpoint), "--images", str(synthetic_dir), "--device", "cpu",
                    "--json", str(out), "--confusion-png", str(pngs), str(tiny_fp32_onnx))
    assert result.exit_code == 0, result.output
    assert "parity: 1/1 model(s) passed -> PASS" in result.output
    data = json.loads(out.read_text())
    assert data["passed"] is True and data["models"][0]["top1_agreement"] == 1.0
    assert data["models"][0]["sha256"] == sha256_file(tiny_fp32_onnx) and data["created"].endswith("+00:00")
    assert data["models"][0]["source_sha256"] == data["reference"]["sha256"] == sha256_file(tiny_checkpoint)
    assert data["reference"]["classification"]["accuracy"] == data["models"][0]["classification"]["accuracy"]
    assert sorted(p.name for p in pngs.iterdir()) == ["01_tiny.onnx_confusion.png", "reference_confusion.png"]


def test_cli_fail_prints_table_then_exits_1(tiny_checkpoint: Path, perturbed_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "parity.json"
    result = _check("--checkpoint", str(tiny_checkpoint), "--synthetic-count", "3", "--device", "cpu",
                    "--json", str(out), str(perturbed_onnx))
    assert result.exit_code == 1, result.output
    assert result.output.index("FAIL perturbed.onnx") < result.output.index("error: parity failed for 1 of 1 model(s): perturbed.onnx")
    assert json.loads(out.read_text())["passed"] is False


def test_cli_tolerance_options_override_defaults(tiny_checkpoint: Path, perturbed_onnx: Path) -> None:
    result = _check("--checkpoint", str(tiny_checkpoint), "--synthetic-count", "3", "--device", "cpu",
                    "--fp32-max-logit-rel", "10", "--fp32-max-prob-diff", "1", "--fp32-min-agreement", "0",
                    str(perturbed_onnx))
    assert result.exit_code == 0, result.output


def test_cli_allow_source_mismatch(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    toy = make_toy_onnx(tmp_path / "toy.onnx", source_sha256="f" * 64)
    args = ["--checkpoint", str(tiny_checkpoint), "--synthetic-count", "2", "--device", "cpu",
            "--fp32-min-agreement", "0", "--fp32-max-logit-rel", "100", "--fp32-max-prob-diff", "1", str(toy)]
    assert _check(*args).exit_code == 1
    allowed = _check("--allow-source-mismatch", *args)
    assert allowed.exit_code == 0, allowed.output
    assert "warning: toy.onnx: source_sha256 ffffffffffff" in allowed.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--images", "/nonexistent/folder"], "does not exist"),
        (["--batch-size", "0"], "batch_size=0"),
        (["--device", "tpu"], "device='tpu'"),
        (["--fp16-min-agreement", "2"], "min_agreement=2.0"),
        (["--confusion-png", "/tmp/x"], "--confusion-png needs --images"),
    ],
)
def test_cli_bad_input_exits_2(tiny_checkpoint: Path, tiny_fp32_onnx: Path, extra: list[str], message: str) -> None:
    result = _check("--checkpoint", str(tiny_checkpoint), *extra, str(tiny_fp32_onnx))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_missing_model_and_mismatched_classes_exit_2(tiny_checkpoint: Path, make_toy_onnx, tmp_path: Path) -> None:
    result = _check("--checkpoint", str(tiny_checkpoint), "--device", "cpu", str(tmp_path / "missing.onnx"))
    assert result.exit_code == 2 and "does not exist" in result.output
    other = make_toy_onnx(tmp_path / "other.onnx", class_names=("A", "B", "C"))
    result = _check("--checkpoint", str(tiny_checkpoint), "--device", "cpu", str(other))
    assert result.exit_code == 2 and "class names" in result.output
    assert _check("--checkpoint", str(tiny_checkpoint)).exit_code == 2  # no MODEL: click usage error


def test_cli_help() -> None:
    result = invoke(cli, ["check", "--help"])
    assert result.exit_code == 0 and "--int8-max-accuracy-drop" in result.output and "--fp16-min-agreement" in result.output


@pytest.mark.realdata
def test_real_images_check(real_data_dir: Path, tiny_checkpoint: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    """A handful of real chest X-rays (linked, never copied) through `check` with labels."""
    root = tmp_path / "cxr"
    for folder in sorted(p for p in real_data_dir.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jp*g"))[:2]:
            (root / folder.name / image.name).symlink_to(image)
    out = tmp_path / "parity.json"
    result = _check("--checkpoint", str(tiny_checkpoint), "--images", str(root), "--device", "cpu", "--json", str(out), str(tiny_fp32_onnx))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["inputs"]["count"] == sum(len(list(d.iterdir())) for d in root.iterdir())
    assert data["models"][0]["top1_agreement"] == 1.0


def test_check_parity_refuses_outputs_before_any_model_runs(tiny_checkpoint: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.parity.run import check_parity

    before = sha256_file(tiny_fp32_onnx)
    with pytest.raises(UserInputError, match="--json"):
        check_parity(tiny_checkpoint, [tiny_fp32_onnx], json=tiny_fp32_onnx, synthetic_count=2, device="cpu")
    assert sha256_file(tiny_fp32_onnx) == before
    with pytest.raises(UserInputError, match="--confusion-png needs --images"):
        check_parity(tiny_checkpoint, [tiny_fp32_onnx], confusion_png=tmp_path / "cm", synthetic_count=2, device="cpu")
    report, written = check_parity(
        tiny_checkpoint, [tiny_fp32_onnx], json=tmp_path / "p.json", synthetic_count=2, device="cpu", progress=False
    )
    assert report and written == [tmp_path / "p.json"] and json.loads(written[0].read_text())["passed"] is True

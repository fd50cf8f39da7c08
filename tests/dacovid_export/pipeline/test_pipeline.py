"""`dacovid-export pipeline`: the embedded default at 64x64 with the tiny head, end to end, and its up-front errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.pipeline import EMBEDDED_NOTICE, PipelineConfig
from tests.helpers.cli import assert_one_line_error, invoke
from tests.helpers.images import write_gray_png
from tests.helpers.runtimes import tensorrt_importable

SPEC_KEYS = ("artifact", "backend", "precision", "batch", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "throughput_ips")


def _rtx_builds_here() -> bool:
    from dacovid_export.trt.library import cuda_visible, installed_runtimes

    found = installed_runtimes()
    return "tensorrt-rtx" in found and not ("tensorrt" in found and cuda_visible())


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory: pytest.TempPathFactory, tiny_image_size: int):
    """The CLI on the embedded default, shrunk: 64x64, narrow 1x1 reduction head, 2 iterations."""
    from dacovid_export.cli.main import cli

    out = tmp_path_factory.mktemp("pipeline") / "run"
    args = [
        "pipeline", "--out", str(out), "--image-size", str(tiny_image_size),
        "--model-option", "reduction_channels=16", "--model-option", "reduction_kernel_size=1",
        "--iterations", "2", "--warmup", "1", "--device", "cpu", "--no-progress",
    ]
    result = invoke(cli, args)
    return out, result


def test_embedded_run_succeeds_and_says_accuracy_means_nothing(embedded_run) -> None:
    out, result = embedded_run
    assert result.exit_code == 0, result.output
    assert EMBEDDED_NOTICE in result.output
    assert EMBEDDED_NOTICE in (out / "report.md").read_text()
    models = 4 if (out / "model.bf16.onnx").is_file() else 3  # the guarded BF16 model, where it was made
    assert f"parity: {models}/{models} model(s) passed -> PASS" in result.output


def test_embedded_run_writes_models_inputs_and_plots(embedded_run) -> None:
    out, _ = embedded_run
    for name in ("embedded-default.pt", "model.onnx", "model.fp16.onnx", "model.int8.onnx", "latency.png", "bench.csv"):
        assert (out / name).is_file(), name
    images = sorted((out / "synthetic-images").rglob("*.png"))
    assert len(images) == 24
    confusion = sorted(p.name for p in (out / "confusion").glob("*.png"))
    models = 4 if (out / "model.bf16.onnx").is_file() else 3  # the guarded BF16 model, where it was made
    assert "reference_confusion.png" in confusion and len(confusion) == models + 1


def test_report_json_holds_bench_parity_and_provenance(embedded_run, tiny_image_size: int) -> None:
    out, _ = embedded_run
    report = json.loads((out / "report.json").read_text())
    assert report["embedded_default"] is True and report["passed"] is True
    bench = report["bench"]
    bf16 = "bf16" in report["export"]  # made where the CPU has BF16 and its guard passed (see the test below)
    assert [(r["backend"], r["precision"]) for r in bench] == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8"),
        ("openvino", "int8"), *([("openvino", "bf16")] if bf16 else []),
    ]
    assert all(set(SPEC_KEYS) <= set(r) and r["batch"] == 1 and r["iterations"] == 2 for r in bench)
    parity = report["parity"]
    assert parity["passed"] is True
    assert [m["precision"] for m in parity["models"]] == ["fp32", "fp16", "int8", *(["bf16"] if bf16 else [])]
    assert parity["inputs"]["count"] == 24
    roles = [a["role"] for a in report["artifacts"]]
    # engines are built wherever TensorRT-RTX is installed (it needs no GPU)
    engines = ["engine fp32", "engine fp16", "engine int8"] if _rtx_builds_here() else []
    assert roles == ["checkpoint", "onnx fp32", "onnx fp16", "onnx int8", *(["onnx bf16"] if bf16 else []), *engines]
    assert all(len(a["sha256"]) == 64 and a["size_bytes"] > 0 for a in report["artifacts"])
    # the FP16 step must have kept the attention (MatMul/Softmax) in FP32
    assert any("softmax" in n.lower() for n in report["export"]["fp16"]["fp32_nodes"])
    assert report["environment"]["cpu"]["logical_cores"] >= 1
    assert report["model_cost"]["image_size"] == tiny_image_size and report["model_cost"]["gflops"] > 0
    comparisons = {h["comparison"] for h in report["headline"]}
    assert "ONNX Runtime FP32 vs PyTorch eager FP32" in comparisons
    assert "OpenVINO INT8 vs ONNX Runtime FP32" in comparisons
    # the CPU INT8 headline uses the faster of ONNX Runtime and OpenVINO
    (cpu_int8,) = [h for h in report["headline"] if h["comparison"].startswith("CPU INT8 (fastest: ")]
    int8_rows = [r for r in bench if r["precision"] == "int8"]
    assert cpu_int8["p50_ms"] == round(min(r["p50_ms"] for r in int8_rows), 3) and cpu_int8["target"] == 0.35
    assert report["export"]["int8"]["int8_guard"]["passed"] is True


def test_bf16_model_or_the_reason(embedded_run) -> None:
    """The guarded BF16 model where the CPU has BF16 and the guard passes; else a skip naming which of the two."""
    out, _ = embedded_run
    report = json.loads((out / "report.json").read_text())
    if "bf16" in report["export"]:
        assert report["export"]["bf16"]["bf16_guard"]["passed"] is True and (out / "model.bf16.onnx").is_file()
        assert any(h["comparison"] == "OpenVINO BF16 vs ONNX Runtime FP32" for h in report["headline"])
        return
    (skip,) = [s for s in report["skipped"] if s["step"] == "ONNX BF16 (guarded)"]
    assert "no BF16 support" in skip["reason"] or "refused by the BF16 guard: BF16 refused" in skip["reason"]
    assert not (out / "model.bf16.onnx").exists()


@pytest.mark.skipif(tensorrt_importable(), reason="TensorRT or TensorRT-RTX is installed here")
def test_engines_are_skipped_with_the_reason(embedded_run) -> None:
    out, result = embedded_run
    report = json.loads((out / "report.json").read_text())
    (skip,) = [s for s in report["skipped"] if s["step"] == "TensorRT engines"]
    assert "TensorRT" in skip["reason"] and "pip install" in skip["reason"]
    assert "skipped **TensorRT engines**" in (out / "report.md").read_text()
    assert not list(out.glob("*.engine"))


@pytest.mark.skipif(not _rtx_builds_here(), reason="needs TensorRT-RTX installed, without TensorRT and a GPU")
def test_rtx_engines_are_built_and_described_without_a_gpu(embedded_run) -> None:
    """TensorRT-RTX builds without a GPU: engines, sizes and precision tables are reported; running them is skipped."""
    out, result = embedded_run
    report = json.loads((out / "report.json").read_text())
    for precision in ("fp32", "fp16", "int8"):
        assert (out / f"model.{precision}.engine").is_file()
        entry = report["export"][f"engine_{precision}"]
        assert entry["runtime"].startswith("TensorRT-RTX") and entry["size_bytes"] > 0
        assert entry["precision_counts"]["attention_fp32"] == entry["precision_counts"]["attention_nodes"] == 6
        assert "not loaded: no GPU here" in entry["loaded_here"]
        (skip,) = [s for s in report["skipped"] if s["step"] == f"parity and latency of the {precision} engine"]
        assert "no CUDA GPU is visible" in skip["reason"]
    assert report["export"]["engine_int8"]["precision_counts"]["convolutions_int8"] == 58
    md = (out / "report.md").read_text()
    assert "## Engines" in md and "convolutions fed by INT8 Q/DQ: 58/58" in md
    # the engines were left out of parity, so the ONNX models alone decide the verdict
    assert {Path(m["path"]).suffix for m in report["parity"]["models"]} == {".onnx"}


# ------------------------------------------------------------------ up-front errors


def test_cli_error_is_one_line_exit_2(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from dacovid_export.cli.main import cli

    result = invoke(
        cli, ["pipeline", "--out", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint), "--image-size", "64"]
    )
    assert_one_line_error(result, "--image-size", stream="output")
    assert not (tmp_path / "o").exists()  # nothing written before the options were checked


def test_cli_bad_model_option_syntax(tmp_path: Path) -> None:
    from dacovid_export.cli.main import cli

    result = invoke(cli, ["pipeline", "--out", str(tmp_path / "o"), "--model-option", "output_stride"])
    assert result.exit_code == 2
    assert "KEY=INTEGER" in result.output


def test_unmatched_image_folders_fail_before_any_export(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from dacovid_export.pipeline import run_pipeline

    write_gray_png(tmp_path / "images" / "cats" / "a.png")
    config = PipelineConfig(out=tmp_path / "o", checkpoint=tiny_checkpoint, images=tmp_path / "images", progress=False)
    with pytest.raises(UserInputError, match="cats"):
        run_pipeline(config)
    assert not (tmp_path / "o" / "model.onnx").exists()


def test_served_section_or_the_reason(embedded_run) -> None:
    """With a serving environment the FP32 and INT8 models are served, judged and timed; without, the report says why."""
    import os

    from dacovid_export.serve.serve_env import SERVE_ENV_VAR

    out, result = embedded_run
    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    if not os.environ.get(SERVE_ENV_VAR):
        (skip,) = [s for s in report["skipped"] if s["step"] == "served"]
        assert "serve-env" in skip["reason"] and report["served"] is None
        return
    served = report["served"]
    assert served is not None, report["failed"]
    parity = served["parity"]
    assert parity["passed"] and [m["precision"] for m in parity["models"]] == ["fp32", "int8"]
    assert all(m["path"].startswith("http://127.0.0.1:") for m in parity["models"])
    assert {r["variant"] for r in served["bench"] if r["backend"] == "triton/http"} == {"concurrency 1", "concurrency 4"}
    assert len(served["levels"]) == 4 and all(level["requests"] > 0 for level in served["levels"])
    assert "## Served" in markdown and "dacovid_classifier: queue" in markdown
    assert (out / "triton_repo" / "dacovid" / "config.pbtxt").is_file()
    assert (out / "triton_repo" / "dacovid_int8_classifier" / "config.pbtxt").is_file()

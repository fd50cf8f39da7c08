"""`dacovid-export pipeline`: the embedded default at 64x64 with the tiny head, end to end, and its up-front errors."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.pipeline import EMBEDDED_NOTICE, PIPELINE_BENCH, PipelineConfig
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
    """The CLI on the embedded default, shrunk: 64x64, narrow 1x1 reduction head, 2 iterations; with its step lines."""
    from dacovid_export.cli.main import cli

    out = tmp_path_factory.mktemp("pipeline") / "run"
    args = [
        "pipeline", "--out", str(out), "--image-size", str(tiny_image_size),
        "--model-option", "reduction_channels=16", "--model-option", "reduction_kernel_size=1",
        "--iterations", "2", "--warmup", "1", "--device", "cpu",
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


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+ (tomllib)")
    return tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())


def test_tensorrt_rtx_is_a_base_dependency() -> None:
    """A plain `pip install -e .` brings TensorRT-RTX (where it has wheels), not only the dev or rtx extras."""
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    (rtx,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "tensorrt-rtx"]
    assert rtx.specifier.contains("1.7.1")
    assert rtx.marker is not None and rtx.marker.evaluate({"sys_platform": "linux", "platform_machine": "x86_64"})
    assert not rtx.marker.evaluate({"sys_platform": "darwin", "platform_machine": "arm64"})
    dev = [Requirement(r).name for r in project["optional-dependencies"]["dev"]]
    assert "tensorrt-rtx" not in dev  # the tests below rely on the base install alone


def test_base_install_runs_the_engine_step(embedded_run) -> None:
    """The engine step ran: three engines and their sidecars, listed with size, build time and per-layer precision."""
    from packaging.requirements import Requirement

    from dacovid_export.trt.library import cuda_visible, installed_runtimes

    out, result = embedded_run
    report = json.loads((out / "report.json").read_text())
    (rtx,) = [r for r in map(Requirement, _pyproject()["project"]["dependencies"]) if r.name == "tensorrt-rtx"]
    if rtx.marker is not None and not rtx.marker.evaluate():
        # no TensorRT-RTX wheel for this platform: the step says so, in one line
        (skip,) = [s for s in report["skipped"] if s["step"] == "TensorRT engines"]
        assert "TensorRT-RTX has no wheel for" in skip["reason"] and "\n" not in skip["reason"]
        return
    if "tensorrt" in installed_runtimes() and cuda_visible():
        pytest.skip("TensorRT and a GPU are here: auto builds with TensorRT, which --device cpu turns off")
    assert "TensorRT engines" not in [s["step"] for s in report["skipped"]], report["skipped"]
    assert report["step_seconds"]["TensorRT engines"] > 0
    md = (out / "report.md").read_text()
    for precision in ("fp32", "fp16", "int8"):
        engine, sidecar = out / f"model.{precision}.engine", out / f"model.{precision}.engine.json"
        assert engine.is_file() and sidecar.is_file()
        assert json.loads(sidecar.read_text())["precision"] == precision
        entry = report["export"][f"engine_{precision}"]
        assert Path(entry["path"]).resolve() == engine.resolve() and entry["size_bytes"] == engine.stat().st_size
        (row,) = [line for line in md.splitlines() if line.startswith(f"| {engine.name} | {sidecar.name} | ")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[4]) == pytest.approx(engine.stat().st_size / 2**20, abs=0.06)  # size (MiB)
        assert float(cells[5]) == pytest.approx(entry["seconds"], abs=0.06) and entry["seconds"] > 0  # build (s)
        # the precision TensorRT gave each layer, in the engine's own section
        section = md.split(f"{precision.upper()} engine:", 1)[1].split("```")[1]
        assert entry["precision_table"] and all(line in section for line in entry["precision_table"])


def test_step_counter_counts_the_steps_that_ran(embedded_run) -> None:
    """[i/n] runs 1..n with n the steps that ran (no [9/8]); report.json and report.md time each of them."""
    from dacovid_export.pipeline.run import PIPELINE_STEPS

    out, result = embedded_run
    # a step's closing line ("[6/9] TensorRT engines: 6.2 s"; a transient bar may precede it on the same line)
    numbers = [(int(i), int(n)) for i, n in re.findall(r"\[(\d+)/(\d+)\] [^\n]*?: [\d.]+ s$", result.output, flags=re.M)]
    assert [i for i, _ in numbers] == list(range(1, PIPELINE_STEPS + 1)), result.output
    assert {n for _, n in numbers} == {PIPELINE_STEPS}
    report = json.loads((out / "report.json").read_text())
    assert len(report["step_seconds"]) == PIPELINE_STEPS
    md = (out / "report.md").read_text()
    steps = md.split("## Steps", 1)[1].split("\n## ", 1)[0].split("\n\n")[1].splitlines()[2:]
    assert len([s for s in steps if s.startswith("| ")]) == PIPELINE_STEPS


_FILE = re.compile(r"[\w./-]*\w\.(?:onnx|engine|json|png|csv|pt|pth|md|data|pbtxt)\b")


def test_every_file_the_report_names_is_in_the_run_folder_or_says_where(embedded_run) -> None:
    out, _ = embedded_run
    md = (out / "report.md").read_text()
    # a link's text is a file's name, its target says where it is: [a.png](confusion/a.png)
    named = set(_FILE.findall(re.sub(r"\[[^\]\n]*\]\(", "(", md)))
    assert {"model.onnx", "model.int8.onnx", "embedded-default.pt"} <= named
    assert "model.bf16.raw.onnx" not in md
    project = Path(__file__).resolve().parents[3]  # the report points at the project's own docs (docs/serving.md)

    def found(name: str) -> bool:
        path = Path(name)
        return path.exists() if path.is_absolute() else (out / path).exists() or (
            path.parts[0] == "docs" and (project / path).is_file()
        )

    missing = [n for n in named if not found(n)]
    assert not missing, f"report.md names files that are neither in {out} nor given with their folder: {missing}"


def test_guard_lines_show_their_resolution(embedded_run) -> None:
    """Each guard line prints the smallest difference its validation set can show next to the target, and warns
    where one image is more than the margin to 100%."""
    from dacovid_export.calibration.guard_report import resolution_warning

    out, _ = embedded_run
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    guards = {"fp16": "fp16_guard", "int8": "int8_guard", "bf16": "bf16_guard"}
    checked = 0
    for precision, key in guards.items():
        guard = report["export"].get(precision, {}).get(key)
        if guard is None:
            continue
        images = guard["after"]["images"] if "after" in guard else guard["agreement"]["images"]
        target = guard.get("target_agreement", guard.get("min_agreement"))
        assert f"1 of {images} images" in md
        for line in resolution_warning(precision.upper(), images, target):
            assert line in md
        checked += 1
    assert checked >= 2


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
    config = PipelineConfig(
        out=tmp_path / "o", checkpoint=tiny_checkpoint, images=tmp_path / "images",
        bench=dataclasses.replace(PIPELINE_BENCH, progress=False),
    )
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

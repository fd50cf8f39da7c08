"""TensorRT-RTX engines built for real (the library builds without a GPU), their sidecars, and their refusals.

Needs the ``tensorrt_rtx`` package (a base dependency where it has wheels);
skips with the reason where it is missing. The tests that run an engine need an
RTX GPU and skip here with their reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.artifacts.engine_metadata import read_engine_metadata, sidecar_path
from dacovid_export.cli.main import cli
from dacovid_export.core.errors import (
    EngineBuildError,
    IncompatibleArtifactError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.engine.build import build_engine
from dacovid_export.engine.config import EngineBuildConfig
from dacovid_export.trt.compat import check_engine_compatibility
from tests.helpers.cli import error_lines, invoke

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed: it is a base dependency (Linux x86_64, Windows x64): pip install -e .")


def _rtx_gpu() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability() in ((8, 0), (8, 6), (8, 9), (12, 0), (12, 1))


needs_rtx_gpu = pytest.mark.skipif(not _rtx_gpu(), reason="running a TensorRT-RTX engine needs an RTX-class GPU (8.0-12.x, not 9.0)")
needs_no_gpu = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="a GPU is visible here: the no-GPU refusal cannot happen"
)


def _build(onnx: Path, out: Path, precision: str, **options) -> object:
    config = EngineBuildConfig(precision=precision, max_batch=2, opt_batch=2, runtime="tensorrt-rtx", **options)
    return build_engine(onnx, out, config, progress=False)


@pytest.fixture(scope="module")
def engines(tiny_fp32_onnx: Path, tiny_fp16_onnx: Path, tiny_int8_onnx: Path, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rtx_engines")
    built = {}
    for precision, onnx in (("fp32", tiny_fp32_onnx), ("fp16", tiny_fp16_onnx), ("int8", tiny_int8_onnx)):
        built[precision] = _build(onnx, folder / f"tiny.{precision}.engine", precision).engine_path
    return built


# ------------------------------------------------------------------ real builds


def test_three_precisions_build_with_sidecars(engines: dict[str, Path]) -> None:
    metas = {p: read_engine_metadata(path) for p, path in engines.items()}
    for precision, meta in metas.items():
        assert meta.runtime == "tensorrt-rtx" and meta.tensorrt_version == trt.__version__
        assert meta.compute_capabilities == ("8.0", "8.6", "8.9", "12.0") and meta.build["default_targets"] is True
        counts = meta.layer_precisions["counts"]
        assert counts["convolutions"] == 58 and counts["attention_nodes"] == 6
        assert meta.layer_precisions["typed_by"].startswith("TensorRT-RTX")
        assert engines[precision].stat().st_size == meta.engine_bytes
    # the attention MatMuls and Softmaxes stay FP32 in both reduced-precision engines, as TensorRT typed them
    for precision in ("fp16", "int8"):
        nodes = metas[precision].layer_precisions["nodes"]
        attention = {n: v for n, v in nodes.items() if v["op"] in ("MatMul", "Softmax")}
        assert len(attention) == 6 and all(v["output"] == "float32" for v in attention.values())
        assert metas[precision].layer_precisions["counts"]["attention_fp32"] == 6
    fp16_convs = [v for v in metas["fp16"].layer_precisions["nodes"].values() if v["op"] == "Conv"]
    assert {v["output"] for v in fp16_convs} == {"float16"}
    assert metas["int8"].layer_precisions["counts"]["convolutions_int8"] == 58
    assert metas["fp32"].layer_precisions["counts"]["convolutions_int8"] == 0
    # TensorRT folds the INT8 weights: the INT8 engine is far smaller than the FP32 one
    assert metas["int8"].engine_bytes < 0.5 * metas["fp32"].engine_bytes
    assert metas["fp16"].engine_bytes < 0.6 * metas["fp32"].engine_bytes


def test_cli_target_cc_and_precision_table(tiny_fp16_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.fp16.engine"
    result = invoke(
        cli, ["trt", str(tiny_fp16_onnx), "--fp16", "-o", str(out), "--runtime", "tensorrt-rtx", "--target-cc", "8.6,12.0", "--max-batch", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "TensorRT-RTX" in result.output and "for compute capabilities 8.6, 12.0" in result.output
    assert "attention (PAM/CAM MatMul+Softmax) in float32: 6/6" in result.output
    data = json.loads(sidecar_path(out).read_text())
    assert data["runtime"] == "tensorrt-rtx" and data["compute_capabilities"] == ["8.6", "12.0"]
    assert data["gpu"] is None and data["build"]["default_targets"] is False


def test_quiet_build_says_nothing_on_stderr_and_the_default_says_each_phase(tiny_fp16_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.core.log import set_verbosity

    args = ["trt", str(tiny_fp16_onnx), "--fp16", "--runtime", "tensorrt-rtx", "--max-batch", "2"]
    try:
        loud = invoke(cli, [*args, "-o", str(tmp_path / "loud.engine")])
        quiet = invoke(cli, [*args, "-o", str(tmp_path / "quiet.engine"), "-q"])
        group_quiet = invoke(cli, ["-q", *args, "-o", str(tmp_path / "group.engine")])
    finally:
        set_verbosity()
    assert loud.exit_code == 0, loud.output
    for line in ("runtime: tensorrt-rtx", "parse ... ", "build+serialize ... fp16, batch 1/2/2", "verify: "):
        assert line in loud.stderr, (line, loud.stderr)
    for result in (quiet, group_quiet):
        assert result.exit_code == 0, result.output
        assert result.stderr == ""  # no phase lines, no TensorRT warnings, no progress bars
        assert result.stdout.startswith("wrote ") and "total " in result.stdout  # the command's result stays
    assert (tmp_path / "quiet.engine").is_file() and (tmp_path / "group.engine").is_file()


def test_auto_picks_rtx_and_says_so(tiny_fp16_onnx: Path, tmp_path: Path) -> None:
    from dacovid_export.trt.library import installed_runtimes

    if "tensorrt" in installed_runtimes():
        pytest.skip("TensorRT is installed too: auto may pick it")
    result = invoke(cli, ["trt", str(tiny_fp16_onnx), "--fp16", "-o", str(tmp_path / "a.engine"), "--max-batch", "2"])
    assert result.exit_code == 0, result.output
    assert "runtime: tensorrt-rtx" in result.output and "auto:" in result.output


def test_rtx_rejects_options_it_does_not_have(tiny_fp16_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--timing-cache does nothing with TensorRT-RTX"):
        EngineBuildConfig(precision="fp16", runtime="tensorrt-rtx", timing_cache=tmp_path / "c")
    with pytest.raises(UserInputError, match="--hardware-compatible is a TensorRT option"):
        EngineBuildConfig(precision="fp16", runtime="tensorrt-rtx", hardware_compatible=True)
    with pytest.raises(UserInputError, match="9.0 is not a TensorRT-RTX target.*--runtime tensorrt"):
        EngineBuildConfig(precision="fp16", runtime="tensorrt-rtx", target_cc=("9.0",))
    with pytest.raises(UserInputError, match="--target-cc applies to TensorRT-RTX"):
        EngineBuildConfig(precision="fp16", runtime="tensorrt", target_cc=("8.6",))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ refusals, one line each


def _toy_with(make_toy_onnx, path: Path, extra_nodes, rewire: str, initializers=(), precision: str = "fp32") -> Path:
    """The toy model with ``extra_nodes`` inserted before its output Mul, which then reads ``rewire``."""
    import onnx

    make_toy_onnx(path, precision=precision)
    model = onnx.load(str(path))
    graph = model.graph
    mul = [n for n in graph.node if n.op_type == "Mul"][0]
    position = list(graph.node).index(mul)
    for offset, node in enumerate(extra_nodes):
        graph.node.insert(position + offset, node)
    mul.input[0] = rewire
    graph.initializer.extend(initializers)
    onnx.save(model, str(path))
    return path


def _cli_trt(onnx: Path, out: Path, *extra: str, precision: str = "fp32") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "dacovid_export", "trt", str(onnx), f"--{precision}", "-o", str(out), "--runtime", "tensorrt-rtx", *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )


def _refused(onnx_path: Path, tmp_path: Path, precision: str = "fp32") -> tuple[str, str]:
    """Build ``onnx_path`` through the CLI into an empty folder: exit 2, one error line, nothing left; (line, stderr)."""
    out = tmp_path / "out" / "refused.engine"
    out.parent.mkdir()
    proc = _cli_trt(onnx_path, out, precision=precision)
    assert proc.returncode == 2, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []
    return line, proc.stderr


def test_unparseable_operator_names_node_and_operator(make_toy_onnx, tmp_path: Path) -> None:
    from onnx import helper

    onnx_path = _toy_with(make_toy_onnx, tmp_path / "unique.onnx", [helper.make_node("Unique", ["mean32"], ["uniq"], name="odd_unique")], "uniq")
    line, stderr = _refused(onnx_path, tmp_path)
    assert "'odd_unique'" in line and "operator Unique" in line
    assert "[TensorRT error]" not in stderr


def test_nonzero_zero_point_is_refused_at_parse(make_toy_onnx, tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("QuantizeLinear", ["mean32", "qscale", "qzero"], ["q"], name="bad_quantize"),
        helper.make_node("DequantizeLinear", ["q", "qscale", "qzero"], ["dq"], name="bad_dequantize"),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "qscale"),
        helper.make_tensor("qzero", TensorProto.INT8, [], [3]),
    ]
    # a Q/DQ graph is an INT8 model (one marked fp32 is refused before TensorRT sees it)
    onnx_path = _toy_with(make_toy_onnx, tmp_path / "zp.onnx", nodes, "dq", inits, precision="int8")
    line, _ = _refused(onnx_path, tmp_path, precision="int8")
    assert "bad_quantize" in line or "bad_dequantize" in line
    assert "QuantizeLinear" in line or "DequantizeLinear" in line


def test_turing_with_fp32_attention_is_explained(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineBuildError) as err:
        _build(tiny_fp32_onnx, tmp_path / "t.engine", "fp32", target_cc=("7.5",))
    text = str(err.value)
    assert "\n" not in text
    assert "Turing" in text and "FP32" in text and "--runtime tensorrt" in text and "drop 7.5" in text
    assert list(tmp_path.iterdir()) == []


@needs_no_gpu
def test_loading_without_gpu_is_one_line(engines: dict[str, Path]) -> None:
    from dacovid_export.serve.predictor import Predictor

    with pytest.raises(MissingDependencyError) as err:
        Predictor.from_path(engines["fp16"])
    text = str(err.value)
    assert "\n" not in text and "TensorRT-RTX engine" in text and "no CUDA GPU is visible" in text


@needs_no_gpu
def test_check_and_bench_skip_the_engine_and_say_why(engines: dict[str, Path], tiny_checkpoint: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    report = tmp_path / "parity.json"
    result = invoke(
        cli, ["check", "--checkpoint", str(tiny_checkpoint), "--synthetic-count", "4", "--no-progress", "--json", str(report),
              str(tiny_fp32_onnx), str(engines["fp16"])],
    )
    assert result.exit_code == 0, result.output
    assert "SKIPPED tiny.fp16.engine" in result.output and "no CUDA GPU is visible" in result.output
    data = json.loads(report.read_text())
    assert [Path(m["path"]).name for m in data["models"]] == [tiny_fp32_onnx.name]
    assert data["skipped"][0]["path"] == str(engines["fp16"])
    # only an engine that cannot run: nothing to compare, one line, exit 2
    proc = subprocess.run(
        [sys.executable, "-m", "dacovid_export", "bench", str(engines["fp16"]), "--batch", "1", "--iterations", "2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "nothing can run here" in line and "no CUDA GPU is visible" in line


def test_compatibility_of_rtx_engines(engines: dict[str, Path]) -> None:
    meta = read_engine_metadata(engines["fp16"])
    check_engine_compatibility(meta, trt_version=trt.__version__, compute_capability=(8, 6), runtime="tensorrt-rtx")
    check_engine_compatibility(meta, trt_version=trt.__version__, compute_capability=(12, 1), runtime="tensorrt-rtx")
    with pytest.raises(IncompatibleArtifactError, match="version that built it"):
        check_engine_compatibility(meta, trt_version="1.8.0.1", compute_capability=(8, 6), runtime="tensorrt-rtx")
    with pytest.raises(IncompatibleArtifactError, match="TensorRT-RTX does not target.*--runtime tensorrt"):
        check_engine_compatibility(meta, trt_version=trt.__version__, compute_capability=(9, 0), runtime="tensorrt-rtx")
    with pytest.raises(IncompatibleArtifactError, match="--runtime tensorrt"):
        check_engine_compatibility(meta, trt_version="10.8.0.43", compute_capability=(8, 6), runtime="tensorrt")
    narrow = type(meta)(**{**meta.__dict__, "compute_capabilities": ("8.6",), "build": {**meta.build, "default_targets": False}})
    with pytest.raises(IncompatibleArtifactError, match="--target-cc 8.9"):
        check_engine_compatibility(narrow, trt_version=trt.__version__, compute_capability=(8, 9), runtime="tensorrt-rtx")


def test_onnx_self_check_uses_the_real_parser(tiny_fp32_onnx: Path, make_toy_onnx, tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    from dacovid_export.core.errors import CheckFailedError
    from dacovid_export.export.checks import run_structural_checks, validate_model

    report = run_structural_checks(validate_model(tiny_fp32_onnx), path=tiny_fp32_onnx)
    assert any(c.startswith("parsed by the TensorRT-RTX") for c in report.checks)
    bad = _toy_with(make_toy_onnx, tmp_path / "u.onnx", [helper.make_node("Unique", ["mean32"], ["uniq"], name="odd_unique")], "uniq")
    with pytest.raises(CheckFailedError, match="odd_unique.*Unique"):
        from dacovid_export.export.checks import _check_operator_support

        _check_operator_support(onnx.load(str(bad)), bad)


# ------------------------------------------------------------------ on an RTX GPU (skip here)


@needs_rtx_gpu
def test_engine_runs_and_matches_onnxruntime(engines: dict[str, Path], tiny_fp32_onnx: Path) -> None:
    from dacovid_export.backends.registry import open_backend
    from dacovid_export.export.onnx_export import sample_batch

    with open_backend(tiny_fp32_onnx, device="cpu") as ort:
        batch = sample_batch(ort.info.preprocessing, 2, seed=0)
        reference = ort.run(batch)
    with open_backend(engines["fp32"]) as engine:
        assert "TensorRT-RTX" in engine.describe()
        logits = engine.run(batch)
    assert np.abs(logits - reference).max() <= 1e-2 * max(1.0, float(np.abs(reference).max()))


@needs_rtx_gpu
def test_runtime_cache_is_written_and_reused(engines: dict[str, Path]) -> None:
    from dacovid_export.backends.registry import open_backend
    from dacovid_export.export.onnx_export import sample_batch

    cache = Path(f"{engines['fp16']}.runtime-cache")
    cache.unlink(missing_ok=True)
    for _ in range(2):
        with open_backend(engines["fp16"]) as engine:
            engine.run(sample_batch(engine.info.preprocessing, 1, seed=0))
        assert cache.is_file() and cache.stat().st_size > 0


def test_triton_serves_rtx_engines_through_the_python_backend(engines: dict[str, Path], tmp_path: Path) -> None:
    """Triton's TensorRT backend cannot load a TensorRT-RTX engine: native is refused, auto takes the python backend."""
    native = invoke(cli, ["triton", str(engines["fp16"]), "--repo", str(tmp_path / "native"), "--backend", "native"])
    assert native.exit_code == 2
    assert "TensorRT-RTX engine" in native.output and "--backend python" in native.output
    assert not (tmp_path / "native").exists() or not any((tmp_path / "native").rglob("*.plan"))
    served = invoke(cli, ["triton", str(engines["fp16"]), "--repo", str(tmp_path / "repo")])
    assert served.exit_code == 0, served.output
    version = tmp_path / "repo" / "dacovid_classifier" / "1"
    assert (version / engines["fp16"].name).read_bytes() == engines["fp16"].read_bytes()
    assert (version / (engines["fp16"].name + ".json")).is_file() and (version / "model.py").is_file()
    assert "python classifier, gpu" in served.output


def test_engine_whose_runtime_is_missing_is_one_line(engines: dict[str, Path], tmp_path: Path) -> None:
    """A TensorRT (not RTX) engine on a machine without TensorRT: one line naming the [trt] extra."""
    import importlib.util
    import shutil

    from dacovid_export.backends.registry import open_backend, unavailable_reason

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "trt.engine"
    shutil.copyfile(engines["fp16"], engine)
    data = json.loads(sidecar_path(engines["fp16"]).read_text())
    data.update(runtime="tensorrt", gpu={"name": "NVIDIA RTX A4000", "compute_capability": "8.6"}, compute_capabilities=[])
    sidecar_path(engine).write_text(json.dumps(data))
    reason = unavailable_reason(engine)
    assert reason is not None and "dacovid-export[trt]" in reason and "\n" not in reason
    with pytest.raises(MissingDependencyError, match=r"dacovid-export\[trt\]"):
        open_backend(engine)

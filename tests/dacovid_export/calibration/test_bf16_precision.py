"""``--precision bf16``: an FP32 graph marked for BF16, made only through the BF16 guard, run only by OpenVINO at bf16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.calibration import bf16
from dacovid_export.calibration.config import PrecisionConfig
from dacovid_export.calibration.convert import convert_precision
from dacovid_export.core.errors import CheckFailedError, UserInputError
from tests.helpers.cli import error_lines, invoke

pytest.importorskip("openvino")


def _bf16_cpu() -> bool:
    from dacovid_export.core.openvino_model import cpu_supports_bf16

    return cpu_supports_bf16()


needs_bf16 = pytest.mark.skipif("not _bf16_cpu()", reason="this CPU has no BF16 (avx512_bf16/AMX): BF16 cannot run here")


@needs_bf16
def test_bf16_model_is_guarded_marked_and_runs_only_as_bf16(
    tiny_checkpoint: Path, tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    import onnx

    from dacovid_export.artifacts.read import read_artifact_info
    from dacovid_export.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dacovid_export.backends.openvino_backend import OpenVINOBackend
    from dacovid_export.backends.registry import auto_backend, open_backend

    out = tmp_path / "m.bf16.onnx"
    # an untrained tiny model's logits are near-ties, so its BF16 agreement is no figure: the target is 0 here
    result = convert_precision(tiny_fp32_onnx, out, PrecisionConfig(precision="bf16", calib_data=synthetic_dir, min_agreement=0.0))
    info = read_artifact_info(out)
    assert info.precision == "bf16" and result.precision == "bf16"
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    guard = json.loads(meta["bf16_guard"])
    assert guard["passed"] and guard["agreement"]["images"] >= 4 and guard["min_agreement"] == 0.0
    assert any(line.startswith("BF16 guard: top-1 agreement") for line in result.notes)
    assert "openvino bf16 vs onnxruntime fp32" in result.verification
    # the graph is the FP32 one, byte for byte in its nodes: BF16 happens at run time
    assert len(onnx.load(str(out)).graph.node) == len(onnx.load(str(tiny_fp32_onnx)).graph.node)

    assert auto_backend(out, "auto")[0] == "openvino"
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    with open_backend(out, device="cpu") as backend:
        assert backend.name == "openvino" and backend.precision == "bf16" and backend.inference_precision == "bf16"
        got = backend.run(x)
    with OpenVINOBackend(tiny_fp32_onnx, inference_precision="bf16") as same:
        np.testing.assert_array_equal(got, same.run(x))  # the hint really is bf16: equal to BF16 of the FP32 file
    from dacovid_export.serve.predictor import Predictor

    with Predictor.from_path(out) as predictor:  # the Predictor opens it the same way (auto, device auto)
        assert predictor.backend.name == "openvino" and predictor.backend.precision == "bf16"
    # check and bench take the same path, with check's BF16 tolerance
    from dacovid_export.bench.config import BenchConfig
    from dacovid_export.bench.run import run_benchmark
    from dacovid_export.parity.config import ParityConfig, Tolerance
    from dacovid_export.parity.run import run_parity

    report = run_parity(
        tiny_checkpoint, [out], synthetic_count=4, progress=False, device="cpu", config=ParityConfig().with_tolerance("bf16", Tolerance(min_agreement=0.0))
    )
    judged = report.models[0]
    assert judged.precision == "bf16" and "inference precision bf16" in judged.backend
    bench = run_benchmark([out], BenchConfig(device="cpu", threads=1, iterations=2, warmup=1, progress=False))
    assert [(r.backend, r.precision) for r in bench.records] == [("openvino", "bf16")]
    with pytest.raises(UserInputError, match="marked for BF16 execution, which ONNX Runtime does not do"):
        OnnxRuntimeBackend(out)
    with pytest.raises(UserInputError, match="marked for BF16 execution: it runs with inference_precision 'bf16'"):
        OpenVINOBackend(out, inference_precision="fp32")


@needs_bf16
def test_bf16_refused_below_target_writes_nothing(tiny_fp32_onnx: Path, synthetic_dir: Path, tmp_path: Path, monkeypatch) -> None:
    def wrong(path, images, threads=None):  # every answer changed
        return -bf16.onnx_logits(Path(path).read_bytes(), images)

    monkeypatch.setattr(bf16, "openvino_bf16_logits", wrong)
    out = tmp_path / "m.bf16.onnx"
    with pytest.raises(CheckFailedError, match=r"BF16 refused for 'm\.bf16\.onnx'.* below min_agreement 99\.0%"):
        convert_precision(tiny_fp32_onnx, out, PrecisionConfig(precision="bf16", validation_data=synthetic_dir))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_no_bf16_cpu_is_refused_in_one_line_before_work(tiny_checkpoint: Path, synthetic_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from dacovid_export.cli.main import cli
    from dacovid_export.core import openvino_model

    monkeypatch.setattr(openvino_model, "cpu_supports_bf16", lambda core=None: False)
    out = tmp_path / "m.bf16.onnx"
    r = invoke(cli, ["onnx", tiny_checkpoint, "-o", out, "--precision", "bf16", "--validation-data", synthetic_dir])
    assert r.exit_code == 2 and len(error_lines(r.stderr)) == 1 and "no BF16 support" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    no_images = invoke(cli, ["onnx", tiny_checkpoint, "-o", out, "--precision", "bf16"])
    assert no_images.exit_code == 2 and "made only through its accuracy guard" in no_images.stderr


def test_bf16_marked_model_elsewhere(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    from dacovid_export.backends.openvino_backend import OpenVINOBackend
    from dacovid_export.backends.registry import auto_backend
    from dacovid_export.core import openvino_model
    from dacovid_export.engine.config import EngineBuildConfig, refuse_engineless_source
    from dacovid_export.parity.config import ParityConfig

    marked = make_toy_onnx(tmp_path / "toy.bf16.onnx", precision="bf16")
    backend, why = auto_backend(marked, "auto")
    assert backend == "openvino" and "marked for BF16" in why  # never ONNX Runtime, never a GPU
    tol = ParityConfig().tolerance_for("bf16")
    assert tol.min_agreement == 0.98 and tol.max_accuracy_drop == 0.01
    assert ParityConfig().with_overrides({"bf16_min_agreement": 0.99}).tolerance_for("bf16").min_agreement == 0.99
    with pytest.raises(UserInputError, match="engines are built from the FP32 ONNX"):
        refuse_engineless_source("bf16", marked)
    with pytest.raises(UserInputError, match="bf16 models run on the CPU through OpenVINO"):
        EngineBuildConfig(precision="bf16")
    monkeypatch.setattr(openvino_model, "cpu_supports_bf16", lambda core=None: False)
    import dacovid_export.backends.openvino_backend as ovb

    monkeypatch.setattr(ovb, "cpu_supports_bf16", lambda core=None: False)
    with pytest.raises(UserInputError, match="marked for BF16 and cannot run here"):
        OpenVINOBackend(marked)

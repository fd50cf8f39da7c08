"""Real TensorRT engines of the tiny model: build FP16/INT8/FP32, run, compatibility, parity.

Needs TensorRT (>= 10.8, the ``[trt]`` extra) and an NVIDIA GPU; skipped
elsewhere with the reason (run pytest with ``-rs`` to see it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

trt = pytest.importorskip(
    "tensorrt", reason="TensorRT is not installed: engine tests need pip install 'dacovid-export[trt]' and an NVIDIA GPU"
)
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU visible: TensorRT engines are built and run on an NVIDIA GPU", allow_module_level=True)


from dacovid_export.artifacts.engine_metadata import read_engine_metadata, sidecar_path
from dacovid_export.calibration.config import PrecisionConfig  # noqa: E402
from dacovid_export.cli.main import cli  # noqa: E402
from dacovid_export.core.errors import (  # noqa: E402
    EngineBuildError,
    IncompatibleArtifactError,
    MissingDependencyError,
    UserInputError,
)
from dacovid_export.core.fileio import sha256_file  # noqa: E402
from dacovid_export.core.versions import parse_version  # noqa: E402
from dacovid_export.data.synthetic import synthetic_batch  # noqa: E402
from dacovid_export.engine.build import build_engine  # noqa: E402
from dacovid_export.engine.config import (  # noqa: E402
    EngineBuildConfig,
    EngineBuildResult,
    precision_onnx_path,
)
from dacovid_export.engine.make import make_engine  # noqa: E402
from dacovid_export.trt.compat import check_engine_compatibility
from dacovid_export.trt.library import import_tensorrt, network_creation_flags  # noqa: E402
from dacovid_export.trt.targets import HARDWARE_COMPATIBLE_MIN_CC
from tests.helpers.cli import invoke  # noqa: E402

try:
    import_tensorrt()
except MissingDependencyError as _exc:  # e.g. a TensorRT older than the supported minimum
    pytest.skip(str(_exc), allow_module_level=True)

IMAGE = 64


@pytest.fixture(scope="module")
def trained_onnx(trained_tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dacovid_export.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("trt_onnx") / "trained.onnx"
    export_onnx(trained_tiny_checkpoint, path)
    return path


@pytest.fixture(scope="module")
def engines(trained_onnx: Path, synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, EngineBuildResult]:
    """FP16 and INT8 engines built from the FP32 ONNX (each runs the precision step first)."""
    out = tmp_path_factory.mktemp("engines")
    cache = out / "timing.cache"
    built = {}
    for precision in ("fp16", "int8"):
        config = EngineBuildConfig(precision=precision, max_batch=4, opt_batch=2, workspace_gib=1, timing_cache=cache)
        built[precision] = make_engine(
            trained_onnx,
            out / f"trained.{precision}.engine",
            config,
            PrecisionConfig(precision="int8", calib_data=synthetic_dir) if precision == "int8" else None,
            progress=False,
        )
    return built


def test_engines_and_sidecars(engines: dict[str, EngineBuildResult]) -> None:
    cc = tuple(torch.cuda.get_device_capability())
    for precision, result in engines.items():
        assert result.engine_path.is_file() and result.metadata_path == sidecar_path(result.engine_path)
        meta = read_engine_metadata(result.engine_path)
        assert meta.precision == precision
        assert meta.tensorrt_version == trt.__version__
        assert meta.compute_capability == cc
        assert (meta.profile_min, meta.profile_opt, meta.profile_max) == ((1, 3, IMAGE, IMAGE), (2, 3, IMAGE, IMAGE), (4, 3, IMAGE, IMAGE))
        assert result.converted_onnx == precision_onnx_path(result.engine_path, precision)
        assert meta.onnx_sha256 == sha256_file(result.converted_onnx)
        assert {"precision", "parse", "build+serialize", "verify", "write"} <= set(result.phase_seconds)
        assert "trtexec" in meta.build and "--saveEngine=" in meta.build["trtexec"]
        assert not any(".tmp" in p.name for p in result.engine_path.parent.iterdir())
    cache = engines["fp16"].timing_cache
    assert cache is not None and cache.is_file() and cache.stat().st_size > 0


def test_strongly_typed_network() -> None:
    from dacovid_export.trt.library import trt_logger

    logger, _ = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_creation_flags(trt))
    if parse_version(trt.__version__)[0] == 10:
        assert network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    else:
        assert network_creation_flags(trt) == 0  # 11.x: always strongly typed, the flag is a no-op


def test_backend_runs(engines: dict[str, EngineBuildResult]) -> None:
    import onnxruntime as ort

    from dacovid_export.backends.tensorrt_backend import TensorRTBackend

    batch = synthetic_batch(3, IMAGE, seed=1)  # 3 x 3 x 64 x 64
    for precision, result in engines.items():
        backend = TensorRTBackend(result.engine_path, device="cuda")
        with backend:
            assert isinstance(backend.cuda_stream, torch.cuda.Stream)
            logits = backend.run(batch)
            assert logits.shape == (3, 3) and logits.dtype == np.float32 and np.isfinite(logits).all()
            # timing hooks: the same rows through stage / execute_staged / fetch
            backend.stage(batch[:2])
            backend.execute_staged()
            backend.synchronize()
            again = backend.fetch()
            scale = float(np.abs(logits).max()) or 1.0
            assert np.abs(again - logits[:2]).max() <= 0.02 * scale
            with pytest.raises(UserInputError, match="outside the range 1..4"):
                backend.run(synthetic_batch(5, IMAGE))
            if precision == "fp16":
                session = ort.InferenceSession(str(result.converted_onnx), providers=["CPUExecutionProvider"])
                reference = session.run(None, {"input": batch})[0]
                assert (reference.argmax(1) == logits.argmax(1)).all()
                assert np.abs(reference - logits).max() <= 0.02 * scale
        backend.close()  # idempotent
        with pytest.raises(UserInputError, match="closed"):
            backend.run(batch)


def test_parity_fp16_int8(engines: dict[str, EngineBuildResult], trained_tiny_checkpoint: Path, synthetic_dir: Path) -> None:
    from dacovid_export.parity.run import run_parity

    report = run_parity(
        trained_tiny_checkpoint,
        [engines["fp16"].engine_path, engines["int8"].engine_path],
        images=synthetic_dir,
        device="cuda",
        progress=False,
    )
    assert report, report


def test_compatibility_checked_before_loading(engines: dict[str, EngineBuildResult], tmp_path: Path) -> None:
    from dacovid_export.backends.tensorrt_backend import TensorRTBackend

    source = engines["fp16"].engine_path
    meta = read_engine_metadata(source)
    check_engine_compatibility(meta, trt_version=trt.__version__, compute_capability=tuple(torch.cuda.get_device_capability()))

    # a sidecar that says another TensorRT version: refused with the rebuild command, engine never deserialized
    engine = tmp_path / "copy.fp16.engine"
    shutil.copyfile(source, engine)
    data = json.loads(sidecar_path(source).read_text())
    data["engine_file"] = engine.name
    data["tensorrt_version"] = "10.8.0.1" if not trt.__version__.startswith("10.8.0.1") else "11.1.0.106"
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(IncompatibleArtifactError, match="rebuild it here with: dacovid-export trt"):
        TensorRTBackend(engine)

    # same size, other bytes: caught by the sidecar's sha256
    data["tensorrt_version"] = trt.__version__
    sidecar_path(engine).write_text(json.dumps(data))
    blob = bytearray(engine.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    engine.write_bytes(bytes(blob))
    with pytest.raises(UserInputError, match="does not match the sha256"):
        TensorRTBackend(engine)


def test_cli_build_fp32_with_cache_and_hardware_compatibility(trained_onnx: Path, tmp_path: Path) -> None:
    hardware_compatible = tuple(torch.cuda.get_device_capability()) >= HARDWARE_COMPATIBLE_MIN_CC
    out = tmp_path / "trained.fp32.engine"
    cache = tmp_path / "cache.bin"
    args = ["trt", str(trained_onnx), "--fp32", "-o", str(out), "--max-batch", "2", "--workspace", "1",
            "--timing-cache", str(cache)]
    if hardware_compatible:
        args.append("--hardware-compatible")
    first = invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"wrote {out}" in first.output and "parse" in first.output
    meta = read_engine_metadata(out)
    assert meta.precision == "fp32" and meta.hardware_compatible == hardware_compatible
    assert meta.onnx_file == str(trained_onnx)
    # the second build reads the cache the first one saved
    second = invoke(cli, args)
    assert second.exit_code == 0, second.output


def test_parser_error_names_node_and_operator(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """An operator TensorRT's ONNX parser lacks (Det) fails with the node's name and operator, leaving no file."""
    import onnx
    from onnx import TensorProto, helper

    from dacovid_export.artifacts.onnx_metadata import write_metadata
    from dacovid_export.data.preprocessing import Preprocessing

    graph = helper.make_graph(
        [helper.make_node("Det", ["input"], ["logits"], name="det_node")],  # N x 3 x S x S -> N x 3
        "unsupported",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, IMAGE, IMAGE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    write_metadata(
        model,
        {
            "format": "dacovid-onnx",
            "format_version": "1",
            "class_names": ["Normal", "Pneumonia", "COVID-19"],
            "preprocessing": Preprocessing(image_size=IMAGE).to_dict(),
            "precision": "fp32",
            "source_sha256": sha256_file(tiny_checkpoint),
        },
    )
    path = tmp_path / "det.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "det.engine"
    with pytest.raises(EngineBuildError) as err:
        build_engine(path, out, EngineBuildConfig(precision="fp32", max_batch=2), progress=False)
    assert "'det_node' (operator Det)" in str(err.value)
    assert not out.exists() and not sidecar_path(out).exists()

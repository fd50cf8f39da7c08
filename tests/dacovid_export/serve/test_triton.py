"""Triton model repositories (ensemble + preprocess/classifier/postprocess), parsed with Triton's own ModelConfig schema.

The schema is tritonclient's generated ``model_config_pb2``. ``from
tritonclient.grpc import model_config_pb2`` needs grpcio; where only the
generated module is present it is loaded from tritonclient's folder by path
(it only needs google.protobuf), so the schema is still Triton's own.
The engine case uses a clearly named placeholder file (tests/helpers/engines.py): Triton's
config does not depend on the plan's bytes, and no engine can be built here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from dacovid_export.cli.main import cli
from dacovid_export.core.errors import UserInputError
from dacovid_export.serve.triton import write_triton_repository
from tests.helpers.cli import invoke
from tests.helpers.engines import PLACEHOLDER_PLAN, write_placeholder_engine


def _model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2

        return model_config_pb2
    except (ImportError, RuntimeError):
        spec = importlib.util.find_spec("tritonclient")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("tritonclient is not installed (pip install 'dacovid-export[dev]')")
        path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
        if not path.is_file():
            pytest.skip(f"tritonclient has no model_config_pb2.py at {path}")
        module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module


def _parse(config_path: Path):
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    return text_format.Parse(config_path.read_text(encoding="utf-8"), pb2.ModelConfig()), pb2


def _all_configs_parse(repo: Path) -> dict:
    configs = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        config, _ = _parse(path)
        assert config.name == path.parent.name
        configs[config.name] = config
    return configs


def test_engine_repository(tmp_path: Path) -> None:
    engine = write_placeholder_engine(tmp_path)
    written = write_triton_repository(engine, tmp_path / "repo", instances=2)
    assert written.classifier_backend == "tensorrt_plan"  # auto: a TensorRT engine goes to the native backend
    assert written.models == ("dacovid", "dacovid_preprocess", "dacovid_classifier", "dacovid_postprocess")
    assert set(_all_configs_parse(tmp_path / "repo")) == set(written.models)
    model_dir = tmp_path / "repo" / "dacovid_classifier"
    assert (model_dir / "1" / "model.plan").read_bytes() == PLACEHOLDER_PLAN
    assert (model_dir / "labels.txt").read_text() == "Normal\nPneumonia\nCOVID-19\n"
    assert json.loads((model_dir / "dacovid_metadata.json").read_text())["tensorrt_version"] == "10.8.0.43"

    config, pb2 = _parse(model_dir / "config.pbtxt")
    assert config.name == "dacovid_classifier"
    assert config.platform == "tensorrt_plan"
    assert config.default_model_filename == "model.plan"
    assert config.max_batch_size == 8
    (inp,) = config.input
    assert inp.name == "input" and inp.data_type == pb2.TYPE_FP32 and list(inp.dims) == [3, 64, 64]
    (out,) = config.output
    assert out.name == "logits" and out.data_type == pb2.TYPE_FP32 and list(out.dims) == [3]
    assert out.label_filename == "labels.txt"
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == pb2.ModelInstanceGroup.KIND_GPU
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["dacovid_precision"] == "fp16"
    assert params["dacovid_tensorrt_version"] == "10.8.0.43"
    assert params["dacovid_compute_capability"] == "7.5"
    assert params["dacovid_hardware_compatible"] == "false"
    assert params["dacovid_source_sha256"] == "cd" * 32
    assert params["dacovid_model_sha256"] == hashlib.sha256(PLACEHOLDER_PLAN).hexdigest()
    assert json.loads(params["dacovid_class_names"]) == ["Normal", "Pneumonia", "COVID-19"]
    assert json.loads(params["dacovid_preprocessing"])["image_size"] == 64
    assert not [p for p in model_dir.rglob("*") if ".tmp" in p.name]


def test_engine_max_batch_rules(tmp_path: Path) -> None:
    engine = write_placeholder_engine(tmp_path)
    write_triton_repository(engine, tmp_path / "repo", name="small", max_batch=2)
    config, _ = _parse(tmp_path / "repo" / "small_classifier" / "config.pbtxt")
    assert config.max_batch_size == 2 and list(config.dynamic_batching.preferred_batch_size) == [2]
    with pytest.raises(UserInputError, match="exceeds the engine's profile maximum 8"):
        write_triton_repository(engine, tmp_path / "repo", name="big", max_batch=16)
    with pytest.raises(UserInputError, match="runs on a GPU only"):
        write_triton_repository(engine, tmp_path / "repo", name="cpu", kind="cpu")
    assert not (tmp_path / "repo" / "big").exists() and not (tmp_path / "repo" / "cpu").exists()


def test_engine_must_accept_batch_one(tmp_path: Path) -> None:
    engine = write_placeholder_engine(tmp_path, profile_min=(2, 3, 64, 64))
    with pytest.raises(UserInputError, match="rebuild it with --min-batch 1"):
        write_triton_repository(engine, tmp_path / "repo")


def test_onnx_repository_cpu(make_toy_onnx, tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    write_triton_repository(onnx_path, tmp_path / "repo", name="toy_cpu", kind="cpu", instances=3, backend="native")
    model_dir = tmp_path / "repo" / "toy_cpu_classifier"
    assert (model_dir / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    config, pb2 = _parse(model_dir / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and config.default_model_filename == "model.onnx"
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, 64, 64] and list(config.output[0].dims) == [3]
    (group,) = config.instance_group
    assert group.count == 3 and group.kind == pb2.ModelInstanceGroup.KIND_CPU
    assert config.parameters["dacovid_precision"].string_value == "fp32"
    assert "dacovid_tensorrt_version" not in config.parameters


def test_bf16_marked_onnx_is_served_only_by_the_python_backend_on_the_cpu(make_toy_onnx, tmp_path: Path) -> None:
    marked = make_toy_onnx(tmp_path / "toy.bf16.onnx", precision="bf16")
    for kwargs in ({"backend": "native", "kind": "cpu"}, {"backend": "python", "kind": "gpu"}):
        with pytest.raises(UserInputError, match="marked for BF16, which only OpenVINO on a CPU runs"):
            write_triton_repository(marked, tmp_path / "repo", name="toy_bf16", **kwargs)
    write_triton_repository(marked, tmp_path / "repo", name="toy_bf16")  # auto: python, cpu
    config = (tmp_path / "repo" / "toy_bf16_classifier" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "KIND_CPU" in config and '"bf16"' in config


def test_onnx_with_external_data_is_copied_with_it(make_toy_onnx, tmp_path: Path) -> None:
    import onnx

    source = make_toy_onnx(tmp_path / "toy.onnx")
    model = onnx.load(str(source))
    external = tmp_path / "ext" / "toy.onnx"
    external.parent.mkdir()
    onnx.save(model, str(external), save_as_external_data=True, all_tensors_to_one_file=True,
              location="toy.onnx.data", size_threshold=0)
    write_triton_repository(external, tmp_path / "repo", max_batch=4, backend="native")
    model_dir = tmp_path / "repo" / "dacovid_classifier"
    assert (model_dir / "1" / "toy.onnx.data").read_bytes() == (external.parent / "toy.onnx.data").read_bytes()
    # the copy loads with its weights: they are found beside model.onnx under their own name
    copied = onnx.load(str(model_dir / "1" / "model.onnx"))
    weights = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in copied.graph.initializer}
    assert weights == {"axes": [2, 3], "scale": 1.0}


def test_onnx_with_fixed_batch_is_refused(make_toy_onnx, tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx", batch=2)
    with pytest.raises(UserInputError, match="fixed batch of 2"):
        write_triton_repository(onnx_path, tmp_path / "repo")


def test_existing_model_needs_overwrite(make_toy_onnx, tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    engine = write_placeholder_engine(tmp_path)
    write_triton_repository(onnx_path, tmp_path / "repo")
    with pytest.raises(UserInputError, match="--overwrite"):
        write_triton_repository(engine, tmp_path / "repo")
    write_triton_repository(engine, tmp_path / "repo", overwrite=True)
    model_dir = tmp_path / "repo" / "dacovid_classifier"
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model.plan"]  # the old model.onnx is gone
    config, _ = _parse(model_dir / "config.pbtxt")
    assert config.platform == "tensorrt_plan"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"name": "../evil"}, "model name"), ({"instances": 0}, "instances=0"), ({"max_batch": 0}, "max_batch=0"),
     ({"kind": "tpu"}, "kind='tpu'"), ({"max_batch": 4096}, "max_batch=4096"), ({"backend": "grpc"}, "backend='grpc'"),
     ({"max_queue_delay_us": -1}, "max_queue_delay_us=-1")],
)
def test_bad_options(make_toy_onnx, tmp_path: Path, kwargs: dict, message: str) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    with pytest.raises(UserInputError, match=message):
        write_triton_repository(onnx_path, tmp_path / "repo", **kwargs)


def test_checkpoint_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="Triton serves an ONNX model or a TensorRT engine"):
        write_triton_repository(tiny_checkpoint, tmp_path / "repo")


def test_cli(make_toy_onnx, tmp_path: Path) -> None:
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    repo = tmp_path / "repo"
    result = invoke(
        cli, ["triton", str(onnx_path), "--repo", str(repo), "--name", "cxr", "--max-batch", "4", "--kind", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "cxr_classifier" in result.output and f"dacovid-export serve {repo}" in result.output
    configs = _all_configs_parse(repo)
    assert set(configs) == {"cxr", "cxr_preprocess", "cxr_classifier", "cxr_postprocess"}
    assert all(c.max_batch_size == 4 for c in configs.values())
    _, pb2 = _parse(repo / "cxr" / "config.pbtxt")
    assert configs["cxr_classifier"].instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
    again = invoke(cli, ["triton", str(onnx_path), "--repo", str(repo), "--name", "cxr"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_python_repository_takes_image_bytes(make_toy_onnx, tmp_path: Path) -> None:
    """The ensemble's I/O, its three steps and the python models' code: all the package's own."""
    onnx_path = make_toy_onnx(tmp_path / "toy.onnx")
    written = write_triton_repository(onnx_path, tmp_path / "repo", instances=2, max_queue_delay_us=500)
    assert written.classifier_backend == "python" and written.kind == "cpu"  # auto: ONNX goes to the python backend
    configs = _all_configs_parse(tmp_path / "repo")
    _, pb2 = _parse(tmp_path / "repo" / "dacovid" / "config.pbtxt")
    ensemble = configs["dacovid"]
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 8
    (image,) = ensemble.input
    assert image.name == "image" and image.data_type == pb2.TYPE_STRING and list(image.dims) == [1]
    outputs = {o.name: (o.data_type, list(o.dims)) for o in ensemble.output}
    assert outputs == {"probabilities": (pb2.TYPE_FP32, [3]), "class_name": (pb2.TYPE_STRING, [1]),
                       "logits": (pb2.TYPE_FP32, [3])}
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "dacovid_preprocess", "dacovid_classifier", "dacovid_postprocess"]
    classifier = configs["dacovid_classifier"]
    assert classifier.backend == "python" and classifier.dynamic_batching.max_queue_delay_microseconds == 500
    assert classifier.instance_group[0].count == 2 and classifier.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
    params = {k: v.string_value for k, v in classifier.parameters.items()}
    assert params["dacovid_model_file"] == "toy.onnx"
    assert params["dacovid_model_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    # the preprocessing model reads the artifact's own preprocessing, not a re-typed copy
    from dacovid_export.artifacts.read import read_artifact_info

    pre = {k: v.string_value for k, v in configs["dacovid_preprocess"].parameters.items()}
    assert json.loads(pre["dacovid_preprocessing"]) == read_artifact_info(onnx_path).preprocessing.to_dict()
    for model, cls in (("dacovid_preprocess", "PreprocessModel"), ("dacovid_classifier", "ClassifierModel"),
                       ("dacovid_postprocess", "PostprocessModel")):
        source = (tmp_path / "repo" / model / "1" / "model.py").read_text()
        assert f"from dacovid_export.serve.triton_models import {cls} as TritonPythonModel" in source
    assert (tmp_path / "repo" / "dacovid_requirements.txt").read_text().count("numpy<2") == 1


def test_rtx_engine_goes_to_the_python_backend(tmp_path: Path) -> None:
    engine = write_placeholder_engine(tmp_path, runtime="tensorrt-rtx")
    written = write_triton_repository(engine, tmp_path / "repo")
    assert written.classifier_backend == "python" and written.kind == "gpu"
    files = sorted(p.name for p in (tmp_path / "repo" / "dacovid_classifier" / "1").iterdir())
    assert files == sorted(["model.py", engine.name, engine.name + ".json"])
    with pytest.raises(UserInputError, match="TensorRT-RTX engine"):
        write_triton_repository(engine, tmp_path / "repo2", backend="native")


def test_the_served_models_import_without_torch() -> None:
    """Triton's python stubs run in the serving environment, which has no torch: the module they import must not
    reach one that imports it at its top (a torch import anywhere on that path stops every served model)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError, as in the serving env
        "import dacovid_export.serve.triton_models\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

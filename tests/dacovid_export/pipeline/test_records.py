"""The pipeline keeps the build's own result and shows it in report.json through the result's to_dict."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dacovid_export.engine.config import EngineBuildConfig, EngineBuildResult
from dacovid_export.pipeline.engines import EngineRecord


def test_engine_record_is_the_build_result_with_the_options_and_time(tmp_path: Path) -> None:
    layers = SimpleNamespace(counts=lambda: {"convolutions_int8": 3}, table_lines=lambda: ["conv1 int8"])
    meta = SimpleNamespace(runtime_label="TensorRT-RTX 1.2", compute_capabilities=("8.9",), engine_bytes=2048)
    result = EngineBuildResult(
        engine_path=tmp_path / "m.int8.engine", metadata_path=tmp_path / "m.int8.engine.json", onnx_path=tmp_path / "m.onnx",
        converted_onnx=None, metadata=meta, phase_seconds={"build+serialize": 1.5}, timing_cache=None, trtexec=[],
        layer_precisions=layers, verified="not loaded: no GPU here",  # type: ignore[arg-type]
    )
    build = EngineBuildConfig(precision="int8", max_batch=8)
    entry = EngineRecord.of(result, build, 2.345).to_dict()
    assert entry["path"] == str(result.engine_path) and entry["runtime"] == "TensorRT-RTX 1.2"
    assert entry["compute_capabilities"] == ["8.9"] and entry["size_bytes"] == 2048 and entry["seconds"] == 2.35
    assert entry["precision_counts"] == {"convolutions_int8": 3} and entry["precision_table"] == ["conv1 int8"]
    assert entry["loaded_here"] == "not loaded: no GPU here" and entry["build"] == build.to_dict()
    assert "metadata_path" not in entry  # the sidecar's business, not the report's

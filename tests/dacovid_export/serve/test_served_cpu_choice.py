"""The served python-backend classifier opens its artifact through `auto`, so it takes auto's CPU choice too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dacovid_export.core.fileio import sha256_file


@pytest.mark.parametrize("pinned", ["openvino", "onnxruntime"])
def test_classifier_model_uses_autos_cpu_choice(make_toy_onnx, tmp_path: Path, monkeypatch, pinned: str) -> None:
    pytest.importorskip("openvino")
    from dacovid_export.serve.triton_models import ClassifierModel

    model = make_toy_onnx(tmp_path / "toy.onnx")
    (tmp_path / "repo" / "1").mkdir(parents=True)
    served = Path(shutil.copy(model, tmp_path / "repo" / "1" / "toy.onnx"))
    params = {"dacovid_model_file": served.name, "dacovid_model_sha256": sha256_file(served)}
    args = {
        "model_config": json.dumps({"parameters": {k: {"string_value": v} for k, v in params.items()}}),
        "model_repository": str(tmp_path / "repo"),
        "model_version": "1",
        "model_instance_kind": "CPU",
    }
    monkeypatch.setenv("DACOVID_CPU_RUNTIME", pinned)  # what auto decided (pinned here so the test is exact)
    classifier = ClassifierModel()
    classifier.initialize(args)
    try:
        assert classifier._backend.name == pinned and classifier._backend.precision == "fp32"
    finally:
        classifier.finalize()

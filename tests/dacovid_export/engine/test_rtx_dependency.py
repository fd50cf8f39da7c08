"""TensorRT-RTX is a base dependency: where it is missing or cannot load, one line says why (issue 29)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.core.errors import MissingDependencyError
from dacovid_export.core.progress import StepTimer
from dacovid_export.trt.versions import RTX_PLATFORMS, rtx_install_hint


def test_hint_on_a_platform_with_wheels_says_reinstall_not_an_extra() -> None:
    hint = rtx_install_hint("Linux", "x86_64")
    assert "pip install -e ." in hint and "[rtx]" not in hint and "\n" not in hint
    assert ("Linux", "x86_64") in RTX_PLATFORMS and ("Windows", "AMD64") in RTX_PLATFORMS


def test_hint_on_a_platform_without_wheels_says_why_in_one_line() -> None:
    hint = rtx_install_hint("Darwin", "arm64")
    assert hint.startswith("TensorRT-RTX has no wheel for Darwin arm64") and "\n" not in hint
    assert "Linux x86_64 and Windows AMD64" in hint and "pip install" not in hint


def test_engine_step_that_cannot_load_the_runtime_is_skipped_in_one_line(tmp_path: Path, monkeypatch) -> None:
    """Installed but not importable (a library that does not load here): the step is skipped with the reason."""
    from dacovid_export.pipeline import engines
    from dacovid_export.pipeline.config import PipelineConfig

    monkeypatch.setattr(engines, "resolve_runtime", lambda requested: ("tensorrt-rtx", "auto: test"))

    def cannot_load(runtime: str) -> None:
        raise MissingDependencyError(f"TensorRT-RTX is not available (needed to build): {rtx_install_hint()}")

    monkeypatch.setattr(engines, "import_runtime", cannot_load)
    built = engines.build_engines({"fp32": tmp_path / "model.onnx"}, PipelineConfig(out=tmp_path / "o"), StepTimer(False))
    (skip,) = built.skipped
    assert skip.step == "TensorRT engines" and "TensorRT-RTX is not available" in skip.reason
    assert "\n" not in skip.reason and not built.paths and not built.failed


@pytest.mark.skipif(rtx_install_hint().startswith("TensorRT-RTX has no wheel"), reason="no TensorRT-RTX wheel here")
def test_the_base_install_has_tensorrt_rtx_here() -> None:
    """Where it has wheels, `pip install -e .` installed it: the runtime ``auto`` picks without TensorRT and a GPU."""
    from dacovid_export.trt.library import installed_runtimes

    assert "tensorrt-rtx" in installed_runtimes()

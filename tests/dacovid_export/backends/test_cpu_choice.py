"""`auto` for FP32 ONNX on the CPU: the faster faithful runtime, measured once, cached, said on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dacovid_export.backends import cpu_choice
from dacovid_export.backends.cpu_choice import CHOICE_ENV, CpuChoice, choose_cpu_runtime
from dacovid_export.backends.registry import auto_backend, open_backend
from dacovid_export.core.errors import UserInputError

pytest.importorskip("openvino")


def test_measures_once_then_reads_the_cache(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    model = make_toy_onnx(tmp_path / "toy.onnx")
    first = choose_cpu_runtime(model, threads=1, cache_dir=tmp_path / "c")
    assert first.source == "measured" and first.faithful is True
    assert first.ort_ms is not None and first.openvino_ms is not None and first.max_abs_diff is not None
    assert first.max_abs_diff <= cpu_choice.FAITHFUL_ATOL
    # the faster one wins only by the margin: the rule, checked on the figures it reports
    expect = "openvino" if first.openvino_ms < cpu_choice.WIN_RATIO * first.ort_ms else "onnxruntime"
    assert first.backend == expect
    entries = list((tmp_path / "c").glob("*.json"))
    assert len(entries) == 1 and not list((tmp_path / "c").glob(".*"))  # atomic: no temporary left
    stored = json.loads(entries[0].read_text())
    assert stored["key"]["threads"] == 1 and len(stored["key"]["artifact_sha256"]) == 64
    second = choose_cpu_runtime(model, threads=1, cache_dir=tmp_path / "c")
    assert second.source == "cache" and second.backend == first.backend and second.ort_ms == first.ort_ms
    # another thread count or another artifact is another key
    choose_cpu_runtime(model, threads=2, cache_dir=tmp_path / "c")
    other = make_toy_onnx(tmp_path / "other.onnx", scale=3.0)
    choose_cpu_runtime(other, threads=1, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").glob("*.json"))) == 3


def test_a_broken_cache_entry_is_measured_again(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    model = make_toy_onnx(tmp_path / "toy.onnx")
    choose_cpu_runtime(model, cache_dir=tmp_path / "c")
    (entry,) = (tmp_path / "c").glob("*.json")
    entry.write_text('{"choice": {"backend": "tensorrt"}}')
    again = choose_cpu_runtime(model, cache_dir=tmp_path / "c")
    assert again.source == "measured"
    assert json.loads(entry.read_text())["choice"]["backend"] in ("onnxruntime", "openvino")


def test_unfaithful_openvino_is_never_chosen(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    model = make_toy_onnx(tmp_path / "toy.onnx")
    from dacovid_export.backends import openvino_backend

    real_run = openvino_backend.OpenVINOBackend._run_host
    # OpenVINO made wrong (and instant): faithfulness is checked before speed
    monkeypatch.setattr(openvino_backend.OpenVINOBackend, "_run_host", lambda self, b: real_run(self, b) + 0.5)
    choice = choose_cpu_runtime(model, cache_dir=tmp_path / "c")
    assert choice.backend == "onnxruntime" and choice.faithful is False
    assert choice.max_abs_diff == pytest.approx(0.5, abs=1e-3) and "not faithful" in choice.reason


def test_faster_faithful_openvino_is_chosen_and_reaches_open_backend(make_toy_onnx, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = make_toy_onnx(tmp_path / "toy.onnx")
    from dacovid_export.backends import onnxruntime_backend

    real_run = onnxruntime_backend.OnnxRuntimeBackend._run_host

    def slow(self, batch):
        import time

        time.sleep(0.05)
        return real_run(self, batch)

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "_run_host", slow)
    backend, why = auto_backend(model, "cpu", threads=1)
    assert backend == "openvino" and "OpenVINO (f32)" in why and "faster and faithful" in why and "measured now" in why
    assert list((tmp_path / "xdg" / "dacovid-export" / "cpu-choice").glob("*.json"))
    # open_backend (Predictor, check, bench, the Triton classifier) takes the same, now cached, choice;
    # ONNX Runtime's thread option is handed to OpenVINO under its name
    with open_backend(model, device="cpu", intra_op_threads=1) as opened:
        assert opened.name == "openvino" and opened.precision == "fp32" and opened.threads == 1
        np.testing.assert_allclose(opened.run(np.ones((1, 3, 64, 64), np.float32)).shape, (1, 3))
    err = capsys.readouterr().err
    assert "using OpenVINO (f32)" in err and "cached in" in err
    with open_backend(model, backend="onnxruntime", device="cpu") as opened:
        assert opened.name == "onnxruntime"  # an explicit choice is kept


def test_pinned_choice_and_its_errors(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    model = make_toy_onnx(tmp_path / "toy.onnx")
    monkeypatch.setenv(CHOICE_ENV, "onnxruntime")
    assert choose_cpu_runtime(model, cache_dir=tmp_path / "c").source == "pinned"
    assert auto_backend(model, "cpu")[0] == "onnxruntime"
    assert not (tmp_path / "c").exists()  # pinned: nothing measured, nothing written
    monkeypatch.setenv(CHOICE_ENV, "openvino")
    with open_backend(model, device="cpu") as opened:
        assert opened.name == "openvino"
    monkeypatch.setenv(CHOICE_ENV, "fastest")
    with pytest.raises(UserInputError, match="DACOVID_CPU_RUNTIME='fastest'.*measure"):
        choose_cpu_runtime(model)
    monkeypatch.delenv(CHOICE_ENV)
    with pytest.raises(UserInputError, match="rounds=0"):
        choose_cpu_runtime(model, rounds=0)
    with pytest.raises(UserInputError, match="tensorrt"):
        CpuChoice(backend="tensorrt", source="measured", reason="")


def test_int8_and_gpu_choices_unchanged(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CHOICE_ENV, "onnxruntime")  # would be ignored for INT8 anyway
    int8 = make_toy_onnx(tmp_path / "toy.int8.onnx", precision="int8")
    assert auto_backend(int8, "cpu")[0] == "openvino"
    fp16 = make_toy_onnx(tmp_path / "toy.fp16.onnx", precision="fp16")
    assert auto_backend(fp16, "cpu") == ("onnxruntime", None)


def test_a_static_batch_model_is_measured_at_its_batch(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    static = make_toy_onnx(tmp_path / "static2.onnx", batch=2)
    choice = choose_cpu_runtime(static, cache_dir=tmp_path / "c")
    assert choice.source == "measured" and choice.faithful is True and "batch 2," in choice.reason


def test_a_changed_model_file_is_measured_again_in_the_same_process(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    model = make_toy_onnx(tmp_path / "toy.onnx")
    choose_cpu_runtime(model, cache_dir=tmp_path / "c")
    assert choose_cpu_runtime(model, cache_dir=tmp_path / "c").source == "cache"
    make_toy_onnx(tmp_path / "new.onnx", scale=2.0).replace(model)  # another model under the same name
    assert choose_cpu_runtime(model, cache_dir=tmp_path / "c").source == "measured"
    assert len(list((tmp_path / "c").glob("*.json"))) == 2


def test_an_option_of_one_runtime_names_it(make_toy_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CHOICE_ENV, "onnxruntime")
    model = make_toy_onnx(tmp_path / "toy.onnx")
    with open_backend(model, device="cpu", inference_precision="fp32", threads=1) as opened:
        assert opened.name == "openvino" and opened.threads == 1
    monkeypatch.setenv(CHOICE_ENV, "openvino")
    with open_backend(model, device="cpu", graph_optimization="basic", threads=1) as opened:
        assert opened.name == "onnxruntime" and opened.intra_op_threads == 1


def test_an_edited_cache_entry_is_escaped_and_an_unfaithful_choice_never_picked(
    make_toy_onnx, tmp_path: Path, monkeypatch, capsys
) -> None:
    # what `auto` prints on stderr comes from the cache: an edited entry must neither forge lines nor pick OpenVINO
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = make_toy_onnx(tmp_path / "toy.onnx")
    auto_backend(model, "cpu", threads=1)
    (entry,) = (tmp_path / "xdg" / "dacovid-export" / "cpu-choice").glob("*.json")
    stored = json.loads(entry.read_text())
    stored["choice"].update(backend="onnxruntime", faithful=True,
                            reason="fine\x1b[2J\x1b[31m\nerror: injected line\r\u202eevil")
    entry.write_text(json.dumps(stored))
    capsys.readouterr()
    with open_backend(model, device="cpu", intra_op_threads=1) as opened:
        assert opened.name == "onnxruntime"
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "\u202e" not in err
    assert not [line for line in err.splitlines() if line.startswith("error:")], err
    assert "\\x1b[2J" in err and "\\x0aerror: injected line" in err  # shown, escaped, on the one line
    # a cached OpenVINO choice that says it was not faithful is measured again, never used
    stored["choice"].update(backend="openvino", faithful=False, reason="cached")
    entry.write_text(json.dumps(stored))
    from dacovid_export.backends import openvino_backend

    real_run = openvino_backend.OpenVINOBackend._run_host
    monkeypatch.setattr(openvino_backend.OpenVINOBackend, "_run_host", lambda self, b: real_run(self, b) + 0.5)
    backend, why = auto_backend(model, "cpu", threads=1)
    assert backend == "onnxruntime" and "measured now" in why and "not faithful" in why

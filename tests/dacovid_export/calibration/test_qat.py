"""Quantization-aware fine-tuning: option rules, BatchNorm folding, a resumed fine-tune equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dacovid_export.core.errors import UserInputError
from tests.helpers.cli import invoke

torch = pytest.importorskip("torch")

from dacovid_export.calibration.config import PrecisionConfig  # noqa: E402
from dacovid_export.calibration.qat import QatConfig, fold_batchnorms, qat_finetune  # noqa: E402


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"epochs": -1}, "epochs=-1"),
        ({"epochs": 0}, "epochs=0"),
        ({"epochs": 10**9}, "epochs=1000000000: give an integer from 1 to 1000"),
        ({"lr": 0}, "lr=0"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"label_weight": -1.0}, "label_weight=-1.0"),
        ({"device": "gpu"}, "--qat-device 'gpu'"),
        ({"device": "cuda:x"}, "--qat-device 'cuda:x'"),
    ],
)
def test_qat_config_quotes_the_bad_value(options: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        QatConfig(**options)


def test_precision_config_qat_rules(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="makes INT8 models"):
        PrecisionConfig(precision="fp16", qat=True)
    with pytest.raises(UserInputError, match="without --qat"):
        PrecisionConfig(precision="int8", calib_data=tmp_path, qat_epochs=3)
    with pytest.raises(UserInputError, match="is the validation data"):
        PrecisionConfig(precision="int8", calib_data=tmp_path, qat=True, train_data=tmp_path, validation_data=tmp_path)
    with pytest.raises(UserInputError, match="lr=0"):
        PrecisionConfig(precision="int8", calib_data=tmp_path, qat=True, qat_lr=0.0)
    config = PrecisionConfig(precision="int8", calib_data=tmp_path, qat=True, qat_epochs=3)
    assert config.qat_config().epochs == 3
    assert config.guard_config().methods[0] == "max"  # the fine-tune's fake quantization used max ranges


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_fine_tune_without_cuda_is_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    images = np.zeros((2, 3, 64, 64), np.float32)
    with pytest.raises(UserInputError, match="CUDA is not available here; use --qat-device cpu or auto"):
        qat_finetune(tiny_checkpoint, tmp_path / "q.pt", train_images=images, calibration_images=images,
                     config=QatConfig(device="cuda"), progress=False, log=lambda _: None)
    assert not (tmp_path / "q.pt").exists()


def test_folding_batchnorms_keeps_the_function_and_the_keys(tiny_checkpoint: Path) -> None:
    from dacovid_export.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
    keys = set(model.state_dict())
    folded = fold_batchnorms(model)
    with torch.no_grad():
        got = model(x)
    assert folded == 55  # ResNet50's 53 conv+BN pairs and the two reductions
    assert set(model.state_dict()) == keys
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    bn = model.backbone[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.running_mean == 0)


def test_resumed_fine_tune_equals_an_uninterrupted_one(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (4, 3, 64, 64)).astype(np.float32)
    calib = rng.normal(0, 1, (2, 3, 64, 64)).astype(np.float32)
    config = QatConfig(epochs=2, lr=1e-4, batch_size=4)
    whole = qat_finetune(tiny_checkpoint, tmp_path / "whole.pt", train_images=train, calibration_images=calib,
                         config=config, progress=False, log=lambda _: None)
    half = qat_finetune(tiny_checkpoint, tmp_path / "part.pt", train_images=train, calibration_images=calib,
                        config=config, progress=False, stop_after_epochs=1, log=lambda _: None)
    assert half.epochs == 1 and not (tmp_path / "part.pt").exists()  # no checkpoint before the last epoch
    assert (tmp_path / "part.pt.qat-state.pt").exists()  # what the resumed run continues from
    resumed = qat_finetune(tiny_checkpoint, tmp_path / "part.pt", train_images=train, calibration_images=calib,
                           config=config, progress=False, resume=True, log=lambda _: None)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs == 2
    assert not (tmp_path / "part.pt.qat-state.pt").exists()  # spent once the checkpoint is written
    assert whole.device == resumed.device == "cpu" and whole.to_dict()["device"] == "cpu"  # auto, no GPU here
    assert resumed.losses == whole.losses
    a = torch.load(tmp_path / "whole.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    original = torch.load(tiny_checkpoint, weights_only=False)["state_dict"]
    assert not torch.equal(a["backbone.0.weight"], original["backbone.0.weight"])  # it did fine-tune (and fold)
    # a state from other options is never continued: one line, and the run starts over
    qat_finetune(tiny_checkpoint, tmp_path / "other.pt", train_images=train, calibration_images=calib,
                 config=config, progress=False, stop_after_epochs=1, log=lambda _: None)
    said: list[str] = []
    other = qat_finetune(tiny_checkpoint, tmp_path / "other.pt", train_images=train, calibration_images=calib,
                         config=QatConfig(epochs=3, lr=1e-4, batch_size=4), progress=False, resume=True,
                         stop_after_epochs=1, log=said.append)
    assert other.resumed_from_epoch == 0 and other.epochs == 1
    assert [line for line in said if "another checkpoint, configuration or image set: starting over" in line], said


def _evil_payloads(marker: Path) -> dict[str, bytes]:
    """State files that run ``touch marker`` when unpickled unsafely, and files that are no state at all."""
    import io
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"fingerprint": {}, "model": Evil()}, buffer)
    return {
        "torch-zip pickle with a payload": buffer.getvalue(),
        "plain pickle with a payload": pickle.dumps({"fingerprint": Evil()}, protocol=2),
        "random bytes": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "a saved list": _saved([1, 2, 3]),
        "metadata that is not JSON": _saved({"meta": "{nope", "tensors": {}}),
        "a foreign tensor set": _saved({"meta": '{"format": "dacovid-qat-state/3"}', "tensors": {"x": torch.zeros(1)}}),
    }


def _saved(value: object) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "case",
    ["torch-zip pickle with a payload", "plain pickle with a payload", "random bytes", "a saved list",
     "metadata that is not JSON", "a foreign tensor set"],
)
def test_a_planted_or_damaged_qat_state_never_runs_and_the_run_starts_over(
    tiny_checkpoint: Path, tmp_path: Path, case: str
) -> None:
    # every `onnx --qat` run whose OUT.qat.pt is absent resumes from OUT.qat.pt.qat-state.pt (resume=True): anyone
    # who can write beside the output can plant it
    marker = tmp_path / "pwned"
    out = tmp_path / "m8.qat.pt"
    state = tmp_path / "m8.qat.pt.qat-state.pt"
    state.write_bytes(_evil_payloads(marker)[case])
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (4, 3, 64, 64)).astype(np.float32)
    said: list[str] = []
    result = qat_finetune(tiny_checkpoint, out, train_images=train, calibration_images=train[:2],
                          config=QatConfig(epochs=2, lr=1e-4, batch_size=4), progress=False, resume=True,
                          stop_after_epochs=0, log=said.append)
    assert not marker.exists(), "the planted state ran its code"
    assert result.resumed_from_epoch == 0  # a clean start (the resume test shows the state is then rewritten)
    warned = [line for line in said if "starting over" in line]
    assert len(warned) == 1 and str(state) in warned[0], said


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--qat"], ["no split.json next to", "--train-data"]),
        (["--qat", "--qat-epochs", "-1"], ["epochs=-1"]),
        (["--qat", "--qat-lr", "0"], ["lr=0.0"]),
        (["--qat-epochs", "2"], ["without --qat"]),
        (["--qat-device", "cpu"], ["without --qat"]),
        (["--qat", "--qat-device", "tpu"], ["--qat-device 'tpu'"]),
    ],
)
def test_cli_qat_bad_options_are_one_line_before_any_work(
    tiny_checkpoint: Path, synthetic_dir: Path, tmp_path: Path, extra: list[str], fragments: list[str]
) -> None:
    from dacovid_export.cli.main import cli

    out = tmp_path / "m8.onnx"
    result = invoke(cli, ["onnx", str(tiny_checkpoint), "-o", str(out), "--precision", "int8", "--calib-data",
                          str(synthetic_dir), *extra])
    assert result.exit_code == 2, result.output
    assert all(f in result.output for f in fragments), result.output
    assert "Traceback" not in result.output and not out.exists()


def test_fake_quantizer_rounds_what_the_int8_writer_rounds_with_its_scales(
    tiny_checkpoint: Path, torch_fp32_onnx: Path, tiny_calibration_set, tmp_path: Path
) -> None:
    # every activation the Q/DQ writer quantizes (convolution inputs, the stem MaxPool, residual identities,
    # the position attention's scaled output and output) has a fake quantizer with the same max scale, and no other
    import onnx
    from onnx import numpy_helper

    from dacovid_export.calibration.int8 import quantize_int8
    from dacovid_export.calibration.qat import FakeQuantizer
    from dacovid_export.model.checkpoint import load_checkpoint

    quantize_int8(torch_fp32_onnx, tmp_path / "int8.onnx", calibration=tiny_calibration_set, method="max",
                  cache_dir=tmp_path / "cache")
    graph = onnx.load(tmp_path / "int8.onnx").graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    written = sorted(
        float(inits[n.input[1]]) * 127.0
        for n in graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits and inits[n.input[1]].size == 1
    )
    model, _ = load_checkpoint(tiny_checkpoint)
    model.eval()
    fold_batchnorms(model)
    quantizer = FakeQuantizer(model)
    quantizer.calibrate(tiny_calibration_set.array, 4)
    trained = sorted(quantizer.amax.values())

    def distinct(values: list[float]) -> list[float]:  # one scale per tensor: shared quantizers (and MaxPool's in/out) coincide
        return sorted({float(f"{v:.5g}") for v in values})

    assert len(trained) > len(written) == 58  # 58 written: the block inputs' quantizers are shared with convolutions
    assert distinct(written) == distinct(trained)
    x = torch.from_numpy(np.array(tiny_calibration_set.array[:2], dtype=np.float32))
    with torch.no_grad():
        rounded = model(x)
        quantizer.remove()
        plain = model(x)
    assert not torch.equal(rounded, plain)  # it did round, and remove() gives the plain model back

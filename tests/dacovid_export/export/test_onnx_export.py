"""FP32 ONNX export of the tiny model: metadata round trip, numerics, batch handling, failure modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dacovid_export.artifacts.onnx_metadata import read_metadata, read_onnx_info
from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.cli.main import cli
from dacovid_export.core.errors import CheckFailedError, UserInputError
from dacovid_export.core.fileio import sha256_file
from dacovid_export.core.onnxruntime_session import open_session, run_session
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.export.config import DEFAULT_OPSET, OnnxExportConfig
from dacovid_export.export.onnx_export import export_onnx, sample_batch
from dacovid_export.model import load_checkpoint
from tests.helpers.cli import assert_one_line_error, invoke

# --- the shared FP32 export (tests/conftest.py: tiny_fp32_onnx) -------------------------------


def test_metadata_round_trip(tiny_fp32_onnx: Path, tiny_checkpoint: Path, tiny_classes: tuple[str, ...]) -> None:
    info = read_onnx_info(tiny_fp32_onnx)
    _, ckpt = load_checkpoint(tiny_checkpoint)
    assert info.kind == "onnx"
    assert info.class_names == tiny_classes
    assert info.preprocessing == ckpt.preprocessing == Preprocessing(image_size=64)
    assert info.precision == "fp32"
    assert info.source_sha256 == sha256_file(tiny_checkpoint)
    assert info.input_name == "input" and info.output_name == "logits"
    assert (info.min_batch, info.max_batch) == (1, None)  # dynamic batch
    assert info.versions["torch"] == torch.__version__.split("+")[0]
    assert info.versions["onnx"] == onnx.__version__
    assert info.extra["opset"] == DEFAULT_OPSET
    assert info.extra["input_shape"][1:] == [3, 64, 64] and isinstance(info.extra["input_shape"][0], str)
    # read_artifact_info dispatches .onnx files here
    assert read_artifact_info(tiny_fp32_onnx) == info

    meta = read_metadata(tiny_fp32_onnx)
    assert json.loads(meta["class_names"]) == list(tiny_classes)
    assert meta["image_size"] == "64"
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(meta["preprocessing"]) == ckpt.preprocessing.to_dict()
    assert meta["torch_version"] and meta["onnx_version"] and meta["dacovid_export_version"]
    assert json.loads(meta["producer"])["name"] == "dacovid-export"
    assert "max_batch" not in meta


def test_single_self_contained_file(tiny_fp32_onnx: Path) -> None:
    model = onnx.load(str(tiny_fp32_onnx), load_external_data=False)
    assert all(init.data_location == onnx.TensorProto.DEFAULT for init in model.graph.initializer)
    assert sorted(p.name for p in tiny_fp32_onnx.parent.iterdir()) == [tiny_fp32_onnx.name]
    (inp,) = model.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["logits"]


def test_onnxruntime_matches_pytorch_at_batch_1_and_3(tiny_fp32_onnx: Path, tiny_checkpoint: Path) -> None:
    model, meta = load_checkpoint(tiny_checkpoint)
    batch = sample_batch(meta.preprocessing, 3, seed=123)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    session = open_session(tiny_fp32_onnx, purpose="run the test")
    three = run_session(session, batch)
    one = run_session(session, batch[:1])
    scale = np.abs(expected).max()
    assert scale > 1.0  # gamma = beta = 0.5 and random weights give logits of real magnitude
    np.testing.assert_allclose(three, expected, atol=1e-4 * scale)
    np.testing.assert_allclose(one, expected[:1], atol=1e-4 * scale)
    assert (three.argmax(1) == expected.argmax(1)).all()


def test_graph_is_clean(tiny_fp32_onnx: Path) -> None:
    from dacovid_export.artifacts.onnx_graph import find_attention_chains
    from dacovid_export.export.checks import op_histogram

    model = onnx.load(str(tiny_fp32_onnx))
    hist = op_histogram(model)
    assert hist["Softmax"] == 2 and hist["MatMul"] == 4
    assert "Exp" not in hist and "BatchNormalization" not in hist  # BN folded into Conv
    assert len(find_attention_chains(model)) == 2
    # ReduceMean's axes (an input since opset 18) is an initializer
    (rm,) = [n for n in model.graph.node if n.op_type == "ReduceMean"]
    assert rm.input[1] in {i.name for i in model.graph.initializer}


def test_read_onnx_info_rejects_corrupt_and_foreign_files(tmp_path: Path, tiny_fp32_onnx: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_fp32_onnx.read_bytes()[:4096])
    with pytest.raises(UserInputError, match="not a readable ONNX model"):
        read_onnx_info(truncated)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(UserInputError, match="ONNX"):
        read_onnx_info(text)
    with pytest.raises(UserInputError, match="does not exist"):
        read_onnx_info(tmp_path / "missing.onnx")
    # a valid ONNX file without our metadata
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(tiny_fp32_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(UserInputError, match="without dacovid-export metadata"):
        read_onnx_info(foreign)


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opset": 18}, "opset=18"),
        ({"opset": 25}, "opset=25"),
        ({"max_batch": 0}, "max_batch=0"),
        ({"rtol": -1.0}, "rtol=-1.0"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_config_rejects_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        OnnxExportConfig(**kwargs)


def test_config_batches() -> None:
    assert OnnxExportConfig().verify_batches() == (1, 3)
    assert OnnxExportConfig().fixed_batch is None
    assert OnnxExportConfig(max_batch=2).verify_batches() == (1, 2)
    assert OnnxExportConfig(static_batch=True).fixed_batch == 1
    assert OnnxExportConfig(static_batch=True, max_batch=4).verify_batches() == (4,)


# --- CLI and export failures ------------------------------------------------------------------


def test_cli_missing_checkpoint_is_one_line_exit_2(tmp_path: Path) -> None:
    result = invoke(cli, ["onnx", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "out.onnx")], catch_exceptions=False)
    assert_one_line_error(result, "does not exist", stream="output")
    assert not (tmp_path / "out.onnx").exists()


def test_cli_non_checkpoint_is_one_line_exit_2(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    result = invoke(cli, ["onnx", str(bogus), "-o", str(tmp_path / "out.onnx")], catch_exceptions=False)
    assert_one_line_error(result, "not a dacovid-export checkpoint", stream="output")
    assert list(tmp_path.iterdir()) == [bogus]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--precision", "int8"], "--calib-data"), (["--opset", "17"], "opset=17"), (["--max-batch", "0"], "max_batch=0")],
)
def test_cli_bad_options_exit_2(tmp_path: Path, tiny_checkpoint: Path, extra: list[str], message: str) -> None:
    result = invoke(cli, ["onnx", str(tiny_checkpoint), "-o", str(tmp_path / "out.onnx"), *extra], catch_exceptions=False)
    assert_one_line_error(result, message, stream="output")


def test_cli_onnx_file_as_checkpoint_is_refused(tmp_path: Path, tiny_fp32_onnx: Path) -> None:
    result = invoke(cli, ["onnx", str(tiny_fp32_onnx), "-o", str(tmp_path / "out.onnx"), "--precision", "fp16"], catch_exceptions=False)
    assert result.exit_code == 2 and "is an ONNX model" in result.output and "convert_precision" in result.output


def test_cli_output_must_be_onnx(tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = invoke(cli, ["onnx", str(tiny_checkpoint), "-o", str(tmp_path / "model.bin")], catch_exceptions=False)
    assert result.exit_code == 2 and "must end in .onnx" in result.output


def test_cli_static_batch(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "static.onnx"
    result = invoke(cli, ["onnx", str(tiny_checkpoint), "-o", str(out), "--static-batch", "--max-batch", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "static batch 2" in result.output and "batch 2: max |diff|" in result.output
    assert "Softmax 2" in result.output  # the operator histogram is printed
    info = read_onnx_info(out)
    assert (info.min_batch, info.max_batch) == (2, 2)
    assert info.extra["input_shape"] == [2, 3, 64, 64]
    assert read_metadata(out)["max_batch"] == "2"
    session = open_session(out, purpose="run the test")
    assert run_session(session, sample_batch(info.preprocessing, 2, seed=0)).shape == (2, 3)


def test_failed_check_leaves_no_output(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose attention softmax is written out by hand exports fine but must fail the pattern check."""
    from dacovid_export.model import attention

    def handwritten_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
        e = torch.exp(x - x.amax(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)

    def cam_forward(self: attention.ChannelAttention, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(2)
        att = handwritten_softmax(torch.matmul(a, a.transpose(1, 2)), dim=-1)
        return self.beta * torch.matmul(att, a).view_as(x) + x

    monkeypatch.setattr(attention.ChannelAttention, "forward", cam_forward)
    out = tmp_path / "sub" / "model.onnx"
    with pytest.raises(CheckFailedError, match="Exp -> ReduceSum -> Div"):
        export_onnx(tiny_checkpoint, out, OnnxExportConfig())
    assert not out.exists()
    # no temporary files either (the folder the run created goes too: a failed run leaves no empty folders)
    assert not (tmp_path / "sub").exists() or list((tmp_path / "sub").iterdir()) == []

"""PipelineConfig: options that shape only the embedded default, bad values and paths, refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.pipeline.config import PipelineConfig


def test_config_rejects_embedded_options_with_a_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--image-size"):
        PipelineConfig(out=tmp_path / "o", checkpoint=tiny_checkpoint, image_size=64)
    with pytest.raises(UserInputError, match="model options"):
        PipelineConfig(out=tmp_path / "o", checkpoint=tiny_checkpoint, model_options={"output_stride": 16})


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"model_options": {"depth": 3}}, "depth"),
        ({"model_options": {"output_stride": 4}}, "output_stride"),
        ({"image_size": 8}, "image_size=8"),
        ({"batch_sizes": (0,)}, "batch size=0"),
        ({"iterations": 0}, "iterations=0"),
        ({"calib_size": 2}, "calib_size=2"),
        ({"device": "tpu"}, "tpu"),
        ({"checkpoint": Path("missing.pt")}, "missing.pt"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=fragment):
        PipelineConfig(out=tmp_path / "o", **kwargs)


def test_out_must_not_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="not a folder"):
        PipelineConfig(out=tmp_path / "file")


def test_checkpoint_must_be_a_checkpoint(make_toy_onnx, tmp_path: Path) -> None:
    toy = make_toy_onnx(tmp_path / "toy.onnx")
    with pytest.raises(UserInputError, match="not a PyTorch checkpoint"):
        PipelineConfig(out=tmp_path / "o", checkpoint=toy)

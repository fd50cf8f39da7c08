from __future__ import annotations

import pytest
import torch

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.preprocessing import Preprocessing
from dacovid_export.model import load_checkpoint, read_checkpoint, save_checkpoint
from dacovid_export.model.network import DACovidNet, ModelConfig


def test_round_trip_keeps_weights_and_metadata(tiny_checkpoint) -> None:
    model, meta = load_checkpoint(tiny_checkpoint)
    assert not model.training
    assert meta.class_names == ("Normal", "Pneumonia", "COVID-19")
    assert meta.preprocessing == Preprocessing(image_size=64)
    assert meta.model_config.reduction_channels == 16
    assert len(meta.sha256) == 64
    assert "torch" in meta.versions and "dacovid-export" in meta.versions
    assert model.pam.gamma.item() == pytest.approx(0.5)
    again, _ = load_checkpoint(tiny_checkpoint)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x))


def test_metadata_is_stored_and_returned(tmp_path) -> None:
    model = DACovidNet(ModelConfig(reduction_channels=16, reduction_kernel_size=1, output_stride=32))
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        class_names=("a", "b", "c"),
        preprocessing=Preprocessing(image_size=96, resize_policy="squash"),
        training={"lr": 1e-4, "epochs": 3},
        metrics={"val_accuracy": 0.9},
        epoch=2,
    )
    _, meta = load_checkpoint(path)
    assert meta.training["lr"] == 1e-4
    assert meta.metrics["val_accuracy"] == 0.9
    assert meta.epoch == 2
    assert meta.preprocessing.resize_policy == "squash"
    assert meta.to_dict()["preprocessing"]["image_size"] == 96


def test_wrong_number_of_class_names(tmp_path) -> None:
    model = DACovidNet(ModelConfig(reduction_channels=16, reduction_kernel_size=1))
    with pytest.raises(ValueError, match="2 class names"):
        save_checkpoint(tmp_path / "m.pt", model, class_names=("a", "b"), preprocessing=Preprocessing())
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "content,match",
    [
        (b"not a checkpoint at all", "not a dacovid-export checkpoint"),
        (None, "does not exist"),
    ],
)
def test_non_checkpoints_are_rejected(tmp_path, content, match) -> None:
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=match):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path) -> None:
    path = tmp_path / "sd.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(UserInputError, match="format tag"):
        read_checkpoint(path)


def test_checkpoint_never_runs_code(tmp_path) -> None:
    # A pickle that would call a function on load must be refused by weights_only=True.
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "dacovid-checkpoint", "payload": Evil()}, path)
    with pytest.raises(UserInputError, match="not a dacovid-export checkpoint"):
        read_checkpoint(path)

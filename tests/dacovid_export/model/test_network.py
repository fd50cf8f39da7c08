from __future__ import annotations

import warnings

import pytest
import torch

from dacovid_export.model import (
    DACovidNet,
    ModelConfig,
    dacovid_net,
    load_backbone_weights,
)


def _quiet_model(**kwargs) -> DACovidNet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dacovid_net(**kwargs).eval()


@pytest.fixture(scope="module")
def paper_model() -> DACovidNet:
    torch.manual_seed(0)
    return _quiet_model()


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes(paper_model: DACovidNet, size: int, batch: int) -> None:
    with torch.no_grad():
        features = paper_model.forward_features(torch.randn(batch, 3, size, size))
        logits = paper_model.forward_head(features)
    assert features.shape == (batch, 512, size // 8, size // 8)
    assert logits.shape == (batch, 3)
    assert torch.isfinite(logits).all()


def test_feature_map_is_28x28_at_224_with_output_stride_8(paper_model: DACovidNet) -> None:
    with torch.no_grad():
        backbone = paper_model.backbone(torch.randn(1, 3, 224, 224))
    assert backbone.shape == (1, 2048, 28, 28)


def test_paper_model_size() -> None:
    # docs/design.md section 5: 42.7 M parameters for the DANet head with 3x3 reductions to 512
    n = sum(p.numel() for p in _quiet_model().parameters())
    assert 42.6e6 < n < 42.8e6


@pytest.mark.parametrize("stride,expected", [(16, 14), (32, 7)])
def test_output_stride_options(stride: int, expected: int) -> None:
    model = _quiet_model(output_stride=stride, reduction_channels=64, reduction_kernel_size=1)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 64, expected, expected)


def test_reduction_kernel_one_is_cheaper() -> None:
    k3 = sum(p.numel() for p in _quiet_model(reduction_kernel_size=3).parameters())
    k1 = sum(p.numel() for p in _quiet_model(reduction_kernel_size=1).parameters())
    assert k3 - k1 == 2 * 2048 * 512 * 8  # two reductions, 9 - 1 taps each


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"output_stride": 4}, "output_stride=4"),
        ({"reduction_kernel_size": 5}, "reduction_kernel_size=5"),
        ({"reduction_channels": 12}, "reduction_channels=12"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"dropout": 1.5}, "dropout=1.5"),
    ],
)
def test_bad_options_are_rejected_with_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_builder_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        dacovid_net(3)  # type: ignore[misc]


def test_builder_warns_without_backbone_weights() -> None:
    with pytest.warns(UserWarning, match="random initialisation"):
        dacovid_net(reduction_channels=16, reduction_kernel_size=1)


def test_backbone_weights_from_torchvision_state_dict(tmp_path) -> None:
    from torchvision.models import resnet50

    torch.manual_seed(3)
    reference = resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = dacovid_net(reduction_channels=16, reduction_kernel_size=1, backbone_weights=path)
    torch.testing.assert_close(model.backbone[0].weight, reference.conv1.weight)
    torch.testing.assert_close(model.backbone[7][2].conv3.weight, reference.layer4[2].conv3.weight)


def test_backbone_weights_that_are_not_resnet50_are_rejected(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    model = _quiet_model(reduction_channels=16, reduction_kernel_size=1)
    with pytest.raises(ValueError, match="not a torchvision ResNet50"):
        load_backbone_weights(model, path)


def test_dynamic_spatial_size_is_not_baked_in(paper_model: DACovidNet) -> None:
    # The same module instance must accept other sizes: nothing read from a shape is cached.
    with torch.no_grad():
        assert paper_model(torch.randn(2, 3, 96, 128)).shape == (2, 3)

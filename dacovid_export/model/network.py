"""DA-COVID Net: dilated ResNet50 -> (reduce -> PAM) + (reduce -> CAM) -> GAP -> dropout -> linear."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet50

from dacovid_export.model.attention import ChannelAttention, PositionAttention
from dacovid_export.model.torch_load import load_tensors

__all__ = ["ModelConfig", "DACovidNet", "dacovid_net", "load_backbone_weights", "DEFAULT_CLASS_NAMES"]

DEFAULT_CLASS_NAMES = ("Normal", "Pneumonia", "COVID-19")

# output stride -> which of layer2/3/4 dilate instead of striding
_DILATION = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}
_BACKBONE_CHANNELS = 2048


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture options; the defaults are the paper's model (DANet head, output stride 8)."""

    num_classes: int = 3
    output_stride: int = 8
    reduction_channels: int = 512
    reduction_kernel_size: int = 3
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes!r}: need an integer >= 2")
        if self.output_stride not in _DILATION:
            raise ValueError(f"output_stride={self.output_stride!r}: choose 8, 16 or 32")
        if not isinstance(self.reduction_channels, int) or self.reduction_channels < 8 or self.reduction_channels % 8:
            raise ValueError(
                f"reduction_channels={self.reduction_channels!r}: need a multiple of 8 (PAM's query/key use channels // 8)"
            )
        if self.reduction_kernel_size not in (1, 3):
            raise ValueError(f"reduction_kernel_size={self.reduction_kernel_size!r}: choose 1 or 3")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout={self.dropout!r}: need 0 <= dropout < 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model options {sorted(unknown)}: this version knows {sorted(names)}")
        return cls(**dict(data))


def _reduction(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DACovidNet(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        r = resnet50(weights=None, replace_stride_with_dilation=_DILATION[config.output_stride])
        # fully convolutional part only: the head below replaces avgpool/fc
        self.backbone = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)
        width, k = config.reduction_channels, config.reduction_kernel_size
        self.pam_reduce = _reduction(_BACKBONE_CHANNELS, width, k)
        self.cam_reduce = _reduction(_BACKBONE_CHANNELS, width, k)
        self.pam = PositionAttention(width)
        self.cam = ChannelAttention()
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # B x 3 x H x W -> B x W' x H/os x W/os  (W' = reduction_channels)
        f = self.backbone(x)
        return self.pam(self.pam_reduce(f)) + self.cam(self.cam_reduce(f))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3))  # B x W'
        return self.classifier(self.dropout(pooled))  # B x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def load_backbone_weights(model: DACovidNet, path: str | os.PathLike[str]) -> None:
    """Initialise the backbone from a local torchvision-format ResNet50 state dict (e.g. ImageNet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {str(path)!r} do not exist")
    state = load_tensors(path, lambda exc: ValueError(f"backbone weights {str(path)!r} cannot be read as a torch state dict ({type(exc).__name__})"))
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"backbone weights {str(path)!r}: expected a torchvision ResNet50 state dict")
    # torchvision names: conv1, bn1, layer1..4, fc; our Sequential indexes them 0..7
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        head, _, rest = key.partition(".")
        if head in order and rest:
            mapped[f"{order.index(head)}.{rest}"] = value
    expected = model.backbone.state_dict().keys()
    missing = [k for k in expected if k not in mapped]
    if missing:
        raise ValueError(
            f"backbone weights {str(path)!r} are not a torchvision ResNet50 state dict: "
            f"{len(missing)} backbone tensors missing (first: {missing[0]!r})"
        )
    try:
        model.backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"backbone weights {str(path)!r} do not fit ResNet50: {exc}") from exc


def dacovid_net(
    *,
    num_classes: int = 3,
    output_stride: int = 8,
    reduction_channels: int = 512,
    reduction_kernel_size: int = 3,
    dropout: float = 0.1,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> DACovidNet:
    """Build DA-COVID Net. Without ``backbone_weights`` the backbone starts from scratch (and a warning says so)."""
    config = ModelConfig(
        num_classes=num_classes,
        output_stride=output_stride,
        reduction_channels=reduction_channels,
        reduction_kernel_size=reduction_kernel_size,
        dropout=dropout,
    )
    model = DACovidNet(config)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    else:
        warnings.warn(
            "no backbone weights given: the ResNet50 backbone starts from random initialisation "
            "(pass a local torchvision ImageNet state dict for the paper's setting)",
            stacklevel=2,
        )
    return model

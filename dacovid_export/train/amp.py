"""Mixed precision on CUDA: bf16 where the GPU has it, else fp16 with loss scaling; FP32 on the CPU.

The attention modules always run in FP32. Their energies (``A A^T`` in CAM) reach
~1e6, far past FP16's 65,504, so an FP16 matmul there gives inf and the softmax NaN;
bf16 has the range but too few mantissa bits for a softmax over such values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["AmpPrecision", "choose_precision", "keep_attention_fp32"]


@dataclasses.dataclass(frozen=True)
class AmpPrecision:
    device_type: str
    dtype: torch.dtype | None  # None: plain FP32

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    @property
    def needs_grad_scaler(self) -> bool:
        return self.dtype == torch.float16

    @property
    def channels_last(self) -> bool:
        # NHWC lets cuDNN use tensor-core convolutions; on the CPU it brings nothing reliable
        return self.device_type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def choose_precision(device: torch.device) -> AmpPrecision:
    if device.type != "cuda":
        return AmpPrecision(device.type, None)
    if torch.cuda.is_bf16_supported():
        return AmpPrecision("cuda", torch.bfloat16)
    return AmpPrecision("cuda", torch.float16)


def _fp32_forward(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, enabled=False):
        return forward(x.float())


def keep_attention_fp32(model: nn.Module) -> None:
    """Make ``model.pam`` and ``model.cam`` compute in FP32 even inside ``torch.autocast``.

    Overrides the instance's ``forward`` (not the class, not the state dict), so
    checkpoints are unchanged and a model built elsewhere is unaffected.
    """
    for name in ("pam", "cam"):
        module = getattr(model, name)
        if not getattr(module, "_dacovid_fp32", False):
            module.forward = functools.partial(_fp32_forward, module.forward)
            module._dacovid_fp32 = True

"""Which torch device a PyTorch step (training, evaluation, the quantization-aware fine-tune) runs on; torch is imported only when one is resolved."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dacovid_export.core.errors import UserInputError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_PATTERN", "check_device_option", "torch_device"]

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


def check_device_option(option: object, flag: str = "--device") -> str:
    """``option`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (no torch import: for up-front validation)."""
    if not isinstance(option, str) or not re.fullmatch(DEVICE_PATTERN, option):
        raise UserInputError(f"{flag} {option!r}: choose auto, cpu, cuda or cuda:N")
    return option


def torch_device(option: str, flag: str = "--device") -> "torch.device":
    """``auto`` -> ``cuda`` if available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` checked against this machine.

    ``flag``: the option the user set, named in the one-line error.
    """
    import torch

    check_device_option(option, flag)
    if option == "auto":
        option = "cuda" if torch.cuda.is_available() else "cpu"
    if option == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserInputError(f"device {option!r} requested but CUDA is not available here; use {flag} cpu or auto")
    index = int(option.partition(":")[2] or torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise UserInputError(f"device cuda:{index} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)

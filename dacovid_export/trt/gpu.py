"""The CUDA GPU an engine is built or runs on, read through ``torch.cuda`` (TensorRT itself is not imported)."""

from __future__ import annotations

import dataclasses

from dacovid_export.core.errors import MissingDependencyError, UserInputError
from dacovid_export.trt.versions import TRT_INSTALL_HINT

__all__ = ["GpuInfo", "gpu_info", "cuda_visible"]


def cuda_visible() -> bool:
    """Whether torch sees a CUDA GPU (TensorRT builds need one; TensorRT-RTX builds do not)."""
    import torch

    return bool(torch.cuda.is_available())


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine is built on or runs on."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int

    @property
    def compute_capability_str(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def gpu_info(device: str | int = "cuda") -> GpuInfo:
    """Name and compute capability of ``device`` (``"cuda"``, ``"cuda:N"`` or an index), read via ``torch.cuda``.

    Raises :class:`MissingDependencyError` when no CUDA GPU is visible and
    :class:`UserInputError` for a bad device string or index.
    """
    import torch

    index = _device_index(device)
    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT engines are built and run on an "
            "NVIDIA GPU; run on a machine with a GPU and driver, with " + TRT_INSTALL_HINT.split(" (")[0]
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise UserInputError(f"device={device!r}: only {count} CUDA device(s) visible")
    props = torch.cuda.get_device_properties(index)
    return GpuInfo(
        index=index,
        name=str(props.name),
        compute_capability=(int(props.major), int(props.minor)),
        total_memory_bytes=int(props.total_memory),
    )


def _device_index(device: str | int) -> int:
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    if isinstance(device, str):
        prefix, _, index = device.partition(":")
        if prefix == "cuda" and (index == "" or index.isdigit()):
            return int(index) if index else 0
    raise UserInputError(f"device={device!r}: TensorRT runs on a GPU; use 'cuda' or 'cuda:N'")

"""Single process or ``torchrun``: one code path, told apart by the environment torchrun sets.

``WORLD_SIZE`` > 1 means distributed data parallel: one process per GPU
(``cuda:LOCAL_RANK``, NCCL) or per CPU process (gloo). Without it nothing here
touches ``torch.distributed`` and every helper is the identity.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.torch_device import torch_device

__all__ = ["DistContext", "init_distributed", "shutdown", "training_device", "all_reduce_sum", "gather_lists", "barrier"]


@dataclasses.dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserInputError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def training_device(option: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """``auto`` -> ``cuda`` if available, else ``cpu``; under torchrun each process takes ``cuda:LOCAL_RANK``."""
    if not distributed:
        return torch_device(option)
    device = torch_device(option)
    if device.type == "cpu":
        return device
    if option not in ("auto", "cuda"):
        raise UserInputError(
            f"device {option!r} under torchrun: each process uses cuda:LOCAL_RANK; pass --device cuda or auto"
        )
    if local_rank >= torch.cuda.device_count():
        raise UserInputError(f"device cuda:{local_rank} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", local_rank)


def init_distributed(device_option: str) -> DistContext:
    """Read torchrun's environment; start the process group only when there is more than one process."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext(device=training_device(device_option))
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = training_device(device_option, local_rank, distributed=True)
    import torch.distributed as dist

    if device.type == "cuda":
        # before the process group, so NCCL binds each rank to its own GPU
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64, on the process's device for NCCL)."""
    if not ctx.distributed:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def gather_lists(ctx: DistContext, values: list[Any]) -> list[Any]:
    """Concatenate each process's list, in rank order (every process gets the whole list)."""
    if not ctx.distributed:
        return list(values)
    import torch.distributed as dist

    parts: list[list[Any] | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in (part or [])]

"""What the network costs: parameters and GFLOPs, for an artifact and for the model options side by side.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the
PyTorch model, which counts a multiply-add as 2 FLOPs (convolutions, matmuls
and linear layers; bias adds, batch norm, softmax and elementwise ops are not
counted). So ``GFLOPs = 2 x GMACs``: the paper's default model at 224x224 is
69.8 GFLOPs (34.9 GMACs) with 42.7 M parameters. Counting runs on the
``meta`` device: shapes only, no arithmetic, so it takes well under a second.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from dacovid_export.artifacts.read import read_artifact_info
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import MIN_IMAGE_SIZE
from dacovid_export.core.progress import progress_bar
from dacovid_export.core.validate import check_int

__all__ = [
    "MODEL_OPTION_GRID",
    "ModelCost",
    "ArtifactCost",
    "CostTable",
    "count_parameters",
    "count_gflops",
    "model_cost",
    "artifact_cost",
    "cost_table",
]

# (output_stride, reduction_kernel_size): the paper's model first, then the cheaper options
MODEL_OPTION_GRID: tuple[tuple[int, int], ...] = ((8, 3), (8, 1), (16, 3), (16, 1), (32, 3), (32, 1))


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Cost of one model configuration at one image size (batch 1)."""

    model_config: Mapping[str, Any]
    image_size: int
    parameters: int
    gflops: float
    latency_ms: float | None = None  # PyTorch eager FP32, CPU, batch 1, median; None when not measured
    latency_iterations: int = 0

    @property
    def label(self) -> str:
        c = self.model_config
        return f"OS{c.get('output_stride')} k{c.get('reduction_kernel_size')} r{c.get('reduction_channels')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "model_config": dict(self.model_config),
            "image_size": self.image_size,
            "parameters": self.parameters,
            "parameters_m": round(self.parameters / 1e6, 3),
            "gflops": round(self.gflops, 3),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "latency_iterations": self.latency_iterations,
        }


@dataclasses.dataclass(frozen=True)
class ArtifactCost:
    """Cost of the network inside an artifact; ``cost`` is None when the artifact does not say its model options."""

    path: str
    cost: ModelCost | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, **(self.cost.to_dict() if self.cost else {"reason": self.reason})}


@dataclasses.dataclass(frozen=True)
class CostTable:
    rows: tuple[ModelCost, ...]
    image_size: int
    latency_threads: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "flop_convention": "FlopCounterMode: 1 multiply-add = 2 FLOPs",
            "latency": "PyTorch eager FP32 on the CPU, batch 1, median",
            "latency_threads": self.latency_threads,
            "rows": [r.to_dict() for r in self.rows],
        }

    def format_markdown(self) -> str:
        base = self.rows[0] if self.rows else None
        lines = [
            f"Model options at {self.image_size}x{self.image_size}, batch 1 "
            "(GFLOPs: FlopCounterMode, 1 multiply-add = 2 FLOPs; latency: PyTorch eager FP32, CPU, "
            f"{self.latency_threads or '?'} threads, median):",
            "",
            "| output stride | reduction kernel | reduction channels | params (M) | GFLOPs | GFLOPs vs first | latency (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            c = row.model_config
            rel = f"{row.gflops / base.gflops:.2f}x" if base and base.gflops else "-"
            lat = "-" if row.latency_ms is None else f"{row.latency_ms:.1f}"
            lines.append(
                f"| {c.get('output_stride')} | {c.get('reduction_kernel_size')} | {c.get('reduction_channels')} | "
                f"{row.parameters / 1e6:.1f} | {row.gflops:.1f} | {rel} | {lat} |"
            )
        return "\n".join(lines)


def _model_config(options: Mapping[str, Any] | Any) -> Any:
    from dacovid_export.model import ModelConfig

    if isinstance(options, ModelConfig):
        return options
    try:
        return ModelConfig.from_dict(dict(options))
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"model options {dict(options)!r}: {exc}") from exc


def _build(config: Any, device: str) -> Any:
    import torch

    from dacovid_export.model import DACovidNet

    with torch.device(device):
        model = DACovidNet(config)
    return model.eval()


def count_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_gflops(model: Any, image_size: int) -> float:
    """GFLOPs of one forward pass at batch 1 (1 multiply-add = 2 FLOPs), counted on the model's device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 1e9


def _median_latency_ms(model: Any, image_size: int, iterations: int, warmup: int) -> float:
    import numpy as np
    import torch

    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    samples = []
    with torch.inference_mode():
        for i in range(warmup + iterations):
            t0 = time.perf_counter_ns()
            model(x)
            if i >= warmup:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(samples))


def model_cost(
    options: Mapping[str, Any] | Any,
    image_size: int,
    *,
    measure_latency: bool = False,
    iterations: int = 3,
    warmup: int = 1,
) -> ModelCost:
    """Parameters and GFLOPs of a model configuration (``ModelConfig`` or its dict) at ``image_size``."""
    check_int("image_size", image_size, MIN_IMAGE_SIZE)
    config = _model_config(options)
    meta_model = _build(config, "meta")
    params = count_parameters(meta_model)
    gflops = count_gflops(meta_model, image_size)
    latency = None
    if measure_latency:
        import torch

        torch.manual_seed(0)
        latency = _median_latency_ms(_build(config, "cpu"), image_size, iterations, warmup)
    return ModelCost(
        model_config=config.to_dict(),
        image_size=image_size,
        parameters=params,
        gflops=gflops,
        latency_ms=latency,
        latency_iterations=iterations if measure_latency else 0,
    )


def artifact_cost(path: str | os.PathLike[str]) -> ArtifactCost:
    """Cost of the network in a checkpoint, ONNX model or engine at its own image size, from its model options."""
    info = read_artifact_info(path)
    options = info.extra.get("model_config") if isinstance(info.extra, Mapping) else None
    if not options:
        return ArtifactCost(str(path), None, "the artifact's metadata holds no model options")
    return ArtifactCost(str(path), model_cost(options, info.image_size))


def cost_table(
    image_size: int,
    *,
    measure_latency: bool = True,
    iterations: int = 3,
    warmup: int = 1,
    options: Sequence[tuple[int, int]] = MODEL_OPTION_GRID,
    reduction_channels: int = 512,
    progress: bool = True,
) -> CostTable:
    """Parameters, GFLOPs and (optionally) CPU latency for each (output stride, reduction kernel) option.

    Latency is PyTorch eager FP32 on the CPU at batch 1, the median of
    ``iterations`` runs after ``warmup``, with torch's current thread setting:
    a rough, relative figure that shows what each option saves.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init warnings are irrelevant for counting
        rows = []
        for output_stride, kernel in progress_bar(options, desc="cost table", unit="model", enabled=progress):
            rows.append(
                model_cost(
                    {"output_stride": output_stride, "reduction_kernel_size": kernel, "reduction_channels": reduction_channels},
                    image_size,
                    measure_latency=measure_latency,
                    iterations=iterations,
                    warmup=warmup,
                )
            )
    return CostTable(rows=tuple(rows), image_size=image_size, latency_threads=torch.get_num_threads() if measure_latency else None)

"""What ``dacovid-bench`` is asked to do: :class:`BenchConfig`, validated on construction, and its choices."""

from __future__ import annotations

import dataclasses
from typing import Any

from dacovid_export.backends.registry import BACKEND_FOR_KIND, BACKEND_NAMES, CPU_INT8_BACKEND
from dacovid_export.backends.triton_endpoint import parse_endpoint_url
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.limits import MAX_CONCURRENCY, check_batch_size, check_image_size
from dacovid_export.core.validate import check_bool, check_int, check_number, is_int

__all__ = [
    "BACKEND_CHOICES",
    "DEVICE_CHOICES",
    "AUTOCAST_CHOICES",
    "DEFAULT_ITERATIONS",
    "DEFAULT_WARMUP",
    "BenchConfig",
    "parse_int_list",
]

# "auto" and every backend of the one registry table
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKEND_NAMES)
DEVICE_CHOICES = ("auto", "cpu", "cuda")
AUTOCAST_CHOICES = ("fp16", "bf16")
DEFAULT_ITERATIONS = 20
DEFAULT_WARMUP = 3

@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to time and how. Validated on construction.

    ``iterations`` and ``duration_s`` are exclusive; with neither, each series
    runs :data:`DEFAULT_ITERATIONS` iterations. ``image_size=None`` uses each
    artifact's own size; a value is checked against every artifact.
    ``threads`` sets torch's intra-op threads and ONNX Runtime's intra-op
    threads (``None``: torch's current setting, ORT's backend default).
    ``autocast``, ``channels_last``, ``cuda_graphs`` and ``compile`` concern
    PyTorch checkpoints: the eager FP32 baseline always runs, then FP32 with
    the chosen options, then each autocast precision with them.
    ``cost``: also compute the parameter/GFLOP table (see :mod:`dacovid_export.bench.cost`).
    FP32 ONNX models on the CPU with ``backend="auto"`` run on the runtime ``auto`` chooses
    (:mod:`dacovid_export.backends.cpu_choice`); ``openvino_fp32`` adds the other FP32 runtime
    (OpenVINO with ``INFERENCE_PRECISION_HINT=f32``, or ONNX Runtime), ``openvino_bf16`` an
    OpenVINO BF16 row of its own precision ``bf16`` (CPUs with BF16 support only; an error elsewhere).
    Every CPU row also gets GFLOP/s and its fraction of an FP32 GEMM measured in the same run
    (:mod:`dacovid_export.bench.gemm`).
    On the CPU with ``backend="auto"``, INT8 ONNX models are timed with ONNX Runtime and
    with OpenVINO (FP32 inference precision set explicitly around the INT8 kernels).
    ``triton``: live endpoints timed at each ``concurrency`` level (:mod:`dacovid_export.bench.served`);
    with them, every artifact also gets in-process ``Predictor`` rows on the same encoded images.
    """

    backend: str = "auto"
    device: str = "auto"
    batch_sizes: tuple[int, ...] = (1,)
    image_size: int | None = None
    warmup: int = DEFAULT_WARMUP
    iterations: int | None = None
    duration_s: float | None = None
    threads: int | None = None
    autocast: tuple[str, ...] = ()
    channels_last: bool = False
    cuda_graphs: bool = False
    compile: bool = False
    cost: bool = False
    cost_latency: bool = True
    openvino_fp32: bool = False
    openvino_bf16: bool = False
    seed: int = 0
    progress: bool = True
    triton: tuple[str, ...] = ()  # live endpoints (http://HOST:PORT, grpc://HOST:PORT) timed beside the artifacts
    triton_model: str = "dacovid"
    concurrency: tuple[int, ...] = (1,)  # concurrent clients per served level

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise UserInputError(f"backend={self.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
        if self.device not in DEVICE_CHOICES:
            raise UserInputError(f"device={self.device!r}: choose one of {', '.join(DEVICE_CHOICES)}")
        batches = tuple(self.batch_sizes)
        if not batches:
            raise UserInputError("batch_sizes is empty: give at least one batch size, e.g. 1,8,32")
        for b in batches:
            check_batch_size(b, "batch size")
        if len(set(batches)) != len(batches):
            raise UserInputError(f"batch_sizes={list(batches)}: each batch size once, please")
        object.__setattr__(self, "batch_sizes", batches)
        if self.image_size is not None:
            check_image_size(self.image_size)
        check_int("warmup", self.warmup, 0)
        if self.iterations is not None and self.duration_s is not None:
            raise UserInputError(
                f"iterations={self.iterations!r} and duration_s={self.duration_s!r}: give one of them, not both"
            )
        if self.iterations is not None:
            check_int("iterations", self.iterations, 1)
        if self.duration_s is not None:
            check_number("duration_s", self.duration_s, 0, above=True, why=" (seconds)")
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        autocast = tuple(self.autocast)
        for p in autocast:
            if p not in AUTOCAST_CHOICES:
                raise UserInputError(f"autocast precision {p!r}: choose from {', '.join(AUTOCAST_CHOICES)}")
        if len(set(autocast)) != len(autocast):
            raise UserInputError(f"autocast={list(autocast)}: each precision once, please")
        object.__setattr__(self, "autocast", autocast)
        for name in ("openvino_fp32", "openvino_bf16"):
            value = getattr(self, name)
            check_bool(name, value)
            if value and (self.backend not in ("auto", CPU_INT8_BACKEND) or self.device == "cuda"):
                raise UserInputError(
                    f"{name} adds OpenVINO CPU rows; backend={self.backend!r}, device={self.device!r} has none: "
                    "use backend auto or openvino on the CPU"
                )
        object.__setattr__(self, "triton", tuple(self.triton))
        for url in self.triton:
            parse_endpoint_url(url)
        levels = tuple(self.concurrency)
        if not levels or any(not is_int(c) or not 1 <= c <= MAX_CONCURRENCY for c in levels):
            raise UserInputError(f"concurrency={list(levels)}: give integers from 1 to {MAX_CONCURRENCY}, e.g. 1,4,8")
        if len(set(levels)) != len(levels):
            raise UserInputError(f"concurrency={list(levels)}: each level once, please")
        object.__setattr__(self, "concurrency", levels)
        if not isinstance(self.triton_model, str) or not self.triton_model:
            raise UserInputError(f"triton_model={self.triton_model!r}: give the served ensemble's name")
        if self.backend not in ("auto", BACKEND_FOR_KIND["checkpoint"]) and self.torch_options_set:
            raise UserInputError(
                f"--autocast/--channels-last/--cuda-graphs/--compile are PyTorch options; backend={self.backend!r} ignores them"
            )

    @property
    def torch_options_set(self) -> bool:
        return bool(self.autocast or self.channels_last or self.cuda_graphs or self.compile)

    @property
    def effective_iterations(self) -> int | None:
        """Iterations per series, or ``None`` when the series runs for ``duration_s``."""
        if self.duration_s is not None:
            return None
        return self.iterations if self.iterations is not None else DEFAULT_ITERATIONS

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["batch_sizes"] = list(self.batch_sizes)
        out["autocast"] = list(self.autocast)
        out["effective_iterations"] = self.effective_iterations
        return out



def parse_int_list(text: str, name: str = "batch sizes") -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; anything else raises :class:`UserInputError` quoting it."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise UserInputError(f"{name} {text!r}: give comma-separated integers, e.g. 1,8,32") from None
    if any(v < 1 for v in values):
        raise UserInputError(f"{name} {text!r}: every value must be >= 1")
    return values


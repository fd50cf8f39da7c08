"""The machine a latency figure was measured on: CPU, GPU, runtime versions and thread settings.

A latency number without this block cannot be compared with anything, so the
bench and the pipeline put it in both their markdown and their JSON.
Optional runtimes (onnxruntime, tensorrt) are looked up through package
metadata, never imported, so collecting the block is cheap and never fails.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from dacovid_export.core.cpu import physical_cores
from dacovid_export.core.versions import package_version

__all__ = ["NOT_INSTALLED", "physical_cores", "collect_environment", "format_environment"]

NOT_INSTALLED = "not installed"


def _cpu_model() -> str:
    # /proc/cpuinfo names the model on Linux; platform.processor() is often just "x86_64"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _version(*names: str) -> str:
    return package_version(*names, default=NOT_INSTALLED)


def _gpu() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"name": None, "count": 0, "cuda_runtime": torch.version.cuda, "driver": None}
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": torch.cuda.get_device_name(index),
        "count": torch.cuda.device_count(),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_runtime": torch.version.cuda,
    }


def collect_environment(*, ort_intra_op_threads: int | str | None = None) -> dict[str, Any]:
    """CPU, GPU, package versions and thread settings as a JSON-ready dict.

    ``ort_intra_op_threads``: what the ONNX Runtime sessions of this run were
    given (ORT has no process-wide setting to read back); ``None`` is recorded
    as "not used".
    """
    import torch

    try:
        # other processes competing for the cores make every CPU figure slower and noisier
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": {
            "model": _cpu_model(),
            "logical_cores": os.cpu_count() or 1,
            "physical_cores": physical_cores(),
            "usable_cores": _usable_cores(),
            "load_average_1_5_15m": load,
        },
        "gpu": _gpu(),
        "versions": {
            "dacovid-export": _version("dacovid-export"),
            "torch": torch.__version__,
            "onnxruntime": _version("onnxruntime-gpu", "onnxruntime"),
            "openvino": _version("openvino"),
            "tensorrt": _version("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
            "onnx": _version("onnx"),
            "nvidia-modelopt": _version("nvidia-modelopt"),
            "numpy": _version("numpy"),
        },
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "ort_intra_op": "not used" if ort_intra_op_threads is None else ort_intra_op_threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "unset"),
        },
    }


def format_environment(env: Mapping[str, Any]) -> str:
    """The environment as a markdown bullet list."""
    cpu, gpu, versions, threads = env["cpu"], env["gpu"], env["versions"], env["threads"]
    if gpu.get("name"):
        gpu_line = (
            f"{gpu['name']} (x{gpu['count']}, {gpu.get('memory_gib', '?')} GiB, "
            f"compute capability {gpu.get('compute_capability', '?')}, CUDA runtime {gpu.get('cuda_runtime')})"
        )
    else:
        gpu_line = "none (CPU only)"
    lines = [
        (
            f"- CPU: {cpu['model']}, {cpu['physical_cores']} physical / {cpu['logical_cores']} logical cores "
            f"({cpu['usable_cores']} usable by this process); load average (1/5/15 min) "
            f"{'/'.join(str(x) for x in cpu['load_average_1_5_15m']) if cpu.get('load_average_1_5_15m') else 'unknown'} "
            "at the end of the run"
        ),
        f"- GPU: {gpu_line}",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in versions.items()),
        f"- Python {env['python']} on {env['platform']}",
        (
            f"- Threads: torch intra-op {threads['torch_intra_op']}, torch inter-op {threads['torch_inter_op']}, "
            f"ONNX Runtime intra-op {threads['ort_intra_op']}, OMP_NUM_THREADS={threads['OMP_NUM_THREADS']}, "
            f"MKL_NUM_THREADS={threads['MKL_NUM_THREADS']}"
        ),
    ]
    return "\n".join(lines)

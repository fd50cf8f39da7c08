"""The CPU's physical core count: ONNX Runtime's default intra-op thread count, and a line of the bench environment.

Here rather than in bench/ because a backend reports it (the threads an ONNX Runtime
session computes with when none were asked for).
"""

from __future__ import annotations

import os

__all__ = ["physical_cores"]


def physical_cores() -> int:
    """Physical cores (ONNX Runtime's default intra-op thread count); logical CPUs where unknown."""
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "physical id":
                    physical_id = value.strip()
                elif key == "core id":
                    core_id = value.strip()
                elif not line.strip():
                    if core_id is not None:
                        cores.add((physical_id or "0", core_id))
                    physical_id = core_id = None
            if core_id is not None:
                cores.add((physical_id or "0", core_id))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1

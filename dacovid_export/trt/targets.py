"""TensorRT facts every stage may quote: the runtimes, TensorRT-RTX's targets and the hardware-compatibility floor.

This module imports nothing, not even the rest of the project, so that artifacts/
(below trt/ in the stage order: trt/ reads ONNX graphs through it) can validate an
engine sidecar against these facts without an import running up the stages;
``tests/dacovid_export/test_layout.py`` allows exactly that and checks that this
module stays import-free.
"""

from __future__ import annotations

__all__ = ["RUNTIMES", "RTX_TARGETS", "RTX_DEFAULT_TARGETS", "HARDWARE_COMPATIBLE_MIN_CC"]

# the libraries that build engines; a sidecar names one
RUNTIMES: tuple[str, ...] = ("tensorrt", "tensorrt-rtx")
# ComputeCapability members of tensorrt_rtx 1.7 (no SM90: TensorRT-RTX does not serve Hopper)
RTX_TARGETS: dict[str, str] = {
    "7.5": "SM75",
    "8.0": "SM80",
    "8.6": "SM86",
    "8.9": "SM89",
    "12.0": "SM120",
    "12.1": "SM121",
}
# what TensorRT-RTX targets when no compute capability is set (its documented default)
RTX_DEFAULT_TARGETS: tuple[str, ...] = ("8.0", "8.6", "8.9", "12.0")
# HardwareCompatibilityLevel.AMPERE_PLUS engines run on Ampere (SM 8.0) and newer GPUs only
HARDWARE_COMPATIBLE_MIN_CC: tuple[int, int] = (8, 0)

"""Where an engine may load: its runtime, library version and GPU against the machine's, with the command that rebuilds it."""

from __future__ import annotations

from collections.abc import Sequence

from dacovid_export.artifacts.engine_metadata import EngineMetadata
from dacovid_export.core.commands import rebuild_command
from dacovid_export.core.errors import IncompatibleArtifactError, UserInputError
from dacovid_export.core.versions import format_version, parse_version
from dacovid_export.trt.targets import HARDWARE_COMPATIBLE_MIN_CC, RTX_TARGETS

__all__ = ["check_engine_compatibility"]


def _runs_on(metadata: EngineMetadata, cc: tuple[int, ...]) -> bool:
    """Whether a TensorRT-RTX engine's targets include compute capability ``cc``."""
    here = f"{cc[0]}.{cc[1]}"
    if here in metadata.compute_capabilities:
        return True
    # TensorRT-RTX's default target set reaches every Blackwell GPU (12.0 and newer)
    return bool(metadata.build.get("default_targets")) and tuple(cc) >= (12, 0)


def check_engine_compatibility(
    metadata: EngineMetadata,
    *,
    trt_version: str,
    compute_capability: tuple[int, int] | Sequence[int] | None,
    gpu_name: str | None = None,
    runtime: str = "tensorrt",
) -> None:
    """Raise :class:`IncompatibleArtifactError` if the engine cannot load with this library on this GPU.

    An engine loads only in the runtime (TensorRT or TensorRT-RTX) and the exact
    version that built it (version compatibility is not used; TensorRT-RTX
    engines never cross releases). A TensorRT engine without hardware
    compatibility needs the build GPU's compute capability; an ``ampere+`` one
    any GPU of 8.0 or newer; a TensorRT-RTX engine one of its target compute
    capabilities. ``compute_capability=None`` (no GPU here) checks the library
    only. The message says which differs and the exact command that rebuilds
    the engine here.
    """
    engine = metadata.path or metadata.engine_file
    if runtime != metadata.runtime:
        raise IncompatibleArtifactError(
            f"{engine} is a {metadata.runtime_label} engine but this machine runs it with "
            f"{'TensorRT-RTX' if runtime == 'tensorrt-rtx' else 'TensorRT'} {trt_version}; rebuild it for that runtime "
            "with: " + rebuild_command(metadata, runtime=runtime)
        )
    command = rebuild_command(metadata)
    running = parse_version(trt_version)
    built = parse_version(metadata.tensorrt_version)
    common = min(len(running), len(built))
    if running[:common] != built[:common]:
        raise IncompatibleArtifactError(
            f"{engine} was built with {metadata.runtime_label} but "
            f"{'TensorRT-RTX' if runtime == 'tensorrt-rtx' else 'TensorRT'} {trt_version} is installed; "
            f"an engine only loads in the version that built it; rebuild it here with: {command}"
        )
    if compute_capability is None:
        return
    cc = tuple(int(v) for v in compute_capability)
    if len(cc) != 2:
        raise UserInputError(f"compute_capability={compute_capability!r}: expected (major, minor)")
    here = f"{cc[0]}.{cc[1]}" + (f" ({gpu_name})" if gpu_name else "")
    if metadata.runtime == "tensorrt-rtx":
        if _runs_on(metadata, cc):
            return
        wanted = f"{cc[0]}.{cc[1]}"
        if wanted not in RTX_TARGETS:
            raise IncompatibleArtifactError(
                f"{engine} is a TensorRT-RTX engine and this GPU is {here}, which TensorRT-RTX does not target "
                f"(it compiles for {', '.join(RTX_TARGETS)}); build a TensorRT engine on this GPU instead with: "
                + rebuild_command(metadata, runtime="tensorrt")
            )
        raise IncompatibleArtifactError(
            f"{engine} was compiled for compute capabilities {', '.join(metadata.compute_capabilities)} but this GPU "
            f"is {here}; rebuild it for this GPU with: " + rebuild_command(metadata, target_cc=[wanted])
        )
    built_on = f"{metadata.compute_capability_str} ({metadata.gpu_name})"
    if metadata.hardware_compatible:
        if cc < HARDWARE_COMPATIBLE_MIN_CC:
            raise IncompatibleArtifactError(
                f"{engine} is a hardware-compatible (ampere+) engine, which needs a GPU of compute capability >= "
                f"{format_version(HARDWARE_COMPATIBLE_MIN_CC)}, but this GPU is {here}; rebuild it here without "
                "--hardware-compatible with: " + rebuild_command(metadata, hardware_compatible=False)
            )
        return
    if cc != metadata.compute_capability:
        raise IncompatibleArtifactError(
            f"{engine} was built for compute capability {built_on} but this GPU is {here}; an engine runs only on "
            f"the GPU architecture it was built for (unless built with --hardware-compatible); rebuild it here with: {command}"
        )


"""The ``trtexec`` command line equivalent to a ``dacovid-export trt`` build.

Flags follow trtexec's own help text (``samples/common/sampleOptions.cpp``) of
TensorRT 10.8 and 11.1:

- 11.x: networks are always strongly typed; ``--fp16 --int8 --best`` and the
  calibration flags are gone and ``--stronglyTyped`` is a deprecated no-op, so
  no precision flag is written. The precision is the ONNX file's.
- 10.x: ``--stronglyTyped`` opts into the same behaviour; ``--fp16``/``--int8``
  are never written because they would let TensorRT pick precisions itself.
- ``--memPoolSize=workspace:N`` takes MiB when no suffix is given; the suffix
  ``M`` is written explicitly so the unit is never in doubt.
- ``--skipInference``: build and save only, as ``dacovid-export trt`` does.

Needs neither TensorRT nor a GPU, so a user can copy the command from any machine.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from dacovid_export.artifacts.onnx_metadata import read_onnx_info
from dacovid_export.core.errors import UserInputError
from dacovid_export.core.validate import check_int
from dacovid_export.engine.config import (
    EngineBuildConfig,
    check_engine_paths,
    precision_onnx_path,
    refuse_engineless_source,
)

__all__ = ["TRTEXEC_MAJORS", "trtexec_command", "trtexec_for", "trtexec_equivalent", "format_command"]

TRTEXEC_MAJORS = (10, 11)


def _shape_spec(input_name: str, dims: Sequence[int]) -> str:
    # trtexec splits "name:dims" at the last colon; a name that itself holds a
    # colon must be single-quoted inside the value (trtexec help: "'input:0':1x3x256x256")
    name = f"'{input_name}'" if ":" in input_name else input_name
    return f"{name}:{'x'.join(str(int(d)) for d in dims)}"


def _mebibytes(gib: float) -> str:
    mib = gib * 1024.0
    return f"{int(mib)}M" if float(mib).is_integer() else f"{mib:.6g}M"


def trtexec_command(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    *,
    trt_major: int,
    input_name: str,
    image_size: int,
    channels: int = 3,
    min_batch: int = 1,
    opt_batch: int,
    max_batch: int,
    workspace_gib: float | None = None,
    opt_level: int | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    hardware_compatible: bool = False,
) -> list[str]:
    """``["trtexec", "--onnx=...", ...]`` for TensorRT ``trt_major`` (10 or 11); join with :func:`format_command`."""
    if trt_major not in TRTEXEC_MAJORS:
        raise UserInputError(f"trt_major={trt_major!r}: trtexec flags are known for TensorRT {TRTEXEC_MAJORS}")
    if not input_name:
        raise UserInputError("input_name is empty: give the ONNX model's input tensor name")
    if "," in input_name or "'" in input_name:
        # trtexec splits shape lists at commas and names at single quotes
        raise UserInputError(f"input name {input_name!r} cannot be written in a trtexec shape flag; rename the ONNX input")
    for name, value in (("image_size", image_size), ("channels", channels), ("min_batch", min_batch),
                        ("opt_batch", opt_batch), ("max_batch", max_batch)):
        check_int(name, value, 1)
    if not min_batch <= opt_batch <= max_batch:
        raise UserInputError(f"batch sizes min={min_batch} opt={opt_batch} max={max_batch}: need min <= opt <= max")
    if workspace_gib is not None and (not math.isfinite(workspace_gib) or workspace_gib <= 0):
        raise UserInputError(f"workspace_gib={workspace_gib!r}: must be a positive number of GiB")
    if opt_level is not None and (not isinstance(opt_level, int) or not 0 <= opt_level <= 5):
        raise UserInputError(f"opt_level={opt_level!r}: TensorRT builder optimization levels are 0..5")

    chw = (channels, image_size, image_size)
    cmd = ["trtexec", f"--onnx={os.fspath(onnx_path)}"]
    if trt_major == 10:
        cmd.append("--stronglyTyped")
    cmd += [
        f"--minShapes={_shape_spec(input_name, (min_batch, *chw))}",
        f"--optShapes={_shape_spec(input_name, (opt_batch, *chw))}",
        f"--maxShapes={_shape_spec(input_name, (max_batch, *chw))}",
    ]
    if workspace_gib is not None:
        cmd.append(f"--memPoolSize=workspace:{_mebibytes(workspace_gib)}")
    if opt_level is not None:
        cmd.append(f"--builderOptimizationLevel={opt_level}")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={os.fspath(timing_cache)}")
    if hardware_compatible:
        cmd.append("--hardwareCompatibilityLevel=ampere+")
    cmd += [f"--saveEngine={os.fspath(engine_path)}", "--skipInference"]
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    """A shell-ready line (arguments quoted where needed)."""
    return shlex.join(list(cmd))


def trtexec_for(
    source: Path, output: Path, config: EngineBuildConfig, major: int, input_name: str, image_size: int, channels: int = 3
) -> list[str]:
    """The trtexec argv of TensorRT ``major`` that builds what ``config`` asks for."""
    return trtexec_command(
        source,
        output,
        trt_major=major,
        input_name=input_name,
        image_size=image_size,
        channels=channels,
        min_batch=config.min_batch,
        opt_batch=config.batch_profile[1],
        max_batch=config.max_batch,
        workspace_gib=config.workspace_gib,
        opt_level=config.opt_level,
        timing_cache=config.timing_cache,
        hardware_compatible=config.hardware_compatible,
    )


def trtexec_equivalent(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EngineBuildConfig,
    *,
    trt_major: int | None = None,
) -> list[tuple[int, list[str]]]:
    """``[(major, trtexec argv)]`` that build what :func:`build_engine` would; needs neither TensorRT nor a GPU.

    ``trt_major=None``: the installed TensorRT's major version, or both 10 and 11
    when TensorRT is not installed. When an FP32 ONNX is to become FP16/INT8 the
    command names the ONNX that the precision step writes (trtexec has no such
    step), see :func:`precision_onnx_path`.
    """
    from dacovid_export.core.versions import parse_version
    from dacovid_export.trt.library import installed_tensorrt_version

    onnx_path, output = Path(onnx_path), Path(output)
    check_engine_paths(onnx_path, output)
    info = read_onnx_info(onnx_path)
    refuse_engineless_source(info.precision, onnx_path)
    have, want = info.precision, config.precision
    if have == want:
        source = onnx_path
    elif have == "fp32":
        source = precision_onnx_path(output, want)
    else:
        raise UserInputError(
            f"{str(onnx_path)!r} is a {have} ONNX and can only become a {have} engine (use --{have})"
        )
    if trt_major is not None:
        majors = [trt_major]
    else:
        installed = installed_tensorrt_version()
        major = parse_version(installed)[0] if installed else None
        majors = [major] if major is not None and major in TRTEXEC_MAJORS else list(TRTEXEC_MAJORS)
    return [
        (
            major,
            trtexec_for(source, output, config, major, info.input_name, info.image_size),
        )
        for major in majors
    ]


"""The command lines the library tells a user to run, written in the CLI's syntax.

An error several stages below the CLI (a stale engine sidecar, an engine built for
another GPU) ends with the exact ``dacovid-export`` command that fixes it. The CLI
sits on top of the stages and may not be imported from below, so its syntax for
such suggestions lives here, in core/, where every stage can quote it; the options
named here are those ``dacovid-export trt`` defines (cli/trt_cmd.py).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from dacovid_export.core.validate import is_int, is_number

__all__ = ["EngineBuildRecord", "rebuild_command"]


class EngineBuildRecord(Protocol):
    """What a rebuild needs to know of an engine: the fields of ``artifacts.engine_metadata.EngineMetadata`` it reads.

    A protocol, not that class, so that core/ imports nothing above it.
    """

    @property
    def path(self) -> str: ...
    @property
    def engine_file(self) -> str: ...
    @property
    def onnx_file(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def min_batch(self) -> int: ...
    @property
    def opt_batch(self) -> int: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def build(self) -> Mapping[str, Any]: ...
    @property
    def compute_capabilities(self) -> tuple[str, ...]: ...
    @property
    def hardware_compatible(self) -> bool: ...


def rebuild_command(
    metadata: EngineBuildRecord,
    engine_path: str | os.PathLike[str] | None = None,
    *,
    runtime: str | None = None,
    target_cc: Sequence[str] | None = None,
    hardware_compatible: bool | None = None,
) -> str:
    """The ``dacovid-export trt`` command line that rebuilds this engine with the same settings.

    ``runtime``/``target_cc``/``hardware_compatible`` override the engine's own
    (to rebuild for the library or GPU that is here instead).
    """
    engine = str(engine_path) if engine_path is not None else (metadata.path or metadata.engine_file)
    runtime = runtime or metadata.runtime
    if hardware_compatible is None:
        hardware_compatible = metadata.hardware_compatible
    args = [
        "dacovid-export",
        "trt",
        metadata.onnx_file,
        f"--{metadata.precision}",
        "-o",
        engine,
        "--runtime",
        runtime,
        "--min-batch",
        str(metadata.min_batch),
        "--opt-batch",
        str(metadata.opt_batch),
        "--max-batch",
        str(metadata.max_batch),
    ]
    workspace = metadata.build.get("workspace_gib")
    if is_number(workspace):
        args += ["--workspace", f"{workspace:g}"]
    level = metadata.build.get("opt_level")
    if is_int(level):
        args += ["--opt-level", str(level)]
    if runtime == "tensorrt-rtx":
        if target_cc is None and metadata.runtime == "tensorrt-rtx" and not metadata.build.get("default_targets"):
            target_cc = metadata.compute_capabilities
        if target_cc:
            args += ["--target-cc", ",".join(target_cc)]
    elif hardware_compatible:
        args.append("--hardware-compatible")
    return shlex.join(args)

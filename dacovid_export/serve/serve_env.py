"""The Python environment that Triton's python stub runs the served models in.

Why a second environment (docs/serving.md, measured): the ``tritonserver`` of
``nvidia-pytriton`` 0.7.0 (server 2.51) has a python stub built on NumPy 1.x, and
with NumPy 2 it loads models and answers every request with empty or wrong tensors,
silently. This package's own environment has NumPy 2 (Model Optimizer needs it). So
the served models run in a venv of their own, made from the pins below by
``dacovid-export serve-env DIR``: the only command of the project that installs
packages, and only when called for that.

:func:`inspect_serve_env` checks such a folder before a server is started (the
Python the stub was built for, NumPy 1.x, the server binary, this package), and
says in one line what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from dacovid_export.core.errors import MissingDependencyError, UserInputError, one_line
from dacovid_export.core.log import get_logger
from dacovid_export.core.versions import __version__

__all__ = [
    "SERVE_ENV_VAR",
    "SERVE_REQUIREMENTS",
    "ServeEnvironment",
    "inspect_serve_env",
    "create_serve_env",
    "serve_env_from",
]

_log = get_logger("serve")

SERVE_ENV_VAR = "DACOVID_SERVE_ENV"
# Tested together (docs/serving.md). numpy<2: the stub's ABI; the runtimes match this package's own pins,
# so a served model computes what Predictor computes.
SERVE_REQUIREMENTS = (
    "numpy==1.26.4",
    "nvidia-pytriton==0.7.0",
    "onnxruntime-gpu==1.24.4",
    "openvino==2026.4.1",
    "onnx==1.21.0",
    "pillow>=10",
    "tqdm>=4.66",
    # DICOM input of the preprocessing model (docs/dicom.md): pylibjpeg needs NumPy 2, so GDCM decodes every
    # compressed syntax here (JPEG 2000 too; lossless files decode to the same values as with OpenJPEG)
    "pydicom==3.0.2",
    "python-gdcm==3.2.6",
)

# run by the environment's own Python: what the server needs, as JSON on one line
_PROBE = r"""
import importlib.util, json, sys, sysconfig
from pathlib import Path
out = {"python": "%d.%d" % sys.version_info[:2], "libdir": sysconfig.get_config_var("LIBDIR") or ""}
for mod in ("numpy", "pytriton", "dacovid_export", "onnxruntime", "openvino"):
    spec = importlib.util.find_spec(mod)
    out[mod] = str(Path(spec.origin).parent) if spec and spec.origin else None
try:
    import numpy; out["numpy_version"] = numpy.__version__
except Exception as exc:  # noqa: BLE001 -- reported, not raised: the caller words it
    out["numpy_version"] = None; out["numpy_error"] = str(exc)
try:
    from importlib import metadata; out["dacovid_version"] = metadata.version("dacovid-export")
except Exception:  # noqa: BLE001
    out["dacovid_version"] = None
print(json.dumps(out))
"""


@dataclasses.dataclass(frozen=True)
class ServeEnvironment:
    """A checked serving environment: where its Python, server and python-backend files are."""

    root: Path
    python: Path
    python_version: str  # "3.11"
    libdir: Path  # the interpreter's own libpython folder: the stub must load that one (LD_LIBRARY_PATH)
    numpy_version: str
    dacovid_version: str
    tritonserver: Path
    backend_files: tuple[Path, ...]  # libtriton_python.so, triton_python_backend_utils.py, triton_python_backend_stub

    @property
    def bin_dir(self) -> Path:
        return self.python.parent


def _rebuild_hint(root: Path) -> str:
    return f"rebuild it with 'dacovid-export serve-env {root} --overwrite'"


def serve_env_from(path: str | os.PathLike[str] | None) -> Path:
    """The environment folder: ``path``, else ``$DACOVID_SERVE_ENV``; neither is an error that says how to make one."""
    value = path if path is not None else os.environ.get(SERVE_ENV_VAR)
    if not value:
        raise MissingDependencyError(
            f"no serving environment: make one with 'dacovid-export serve-env DIR' and pass --env DIR "
            f"(or set {SERVE_ENV_VAR}=DIR); Triton's python stub needs NumPy 1.x, this environment has NumPy 2"
        )
    return Path(value)


def inspect_serve_env(root: str | os.PathLike[str]) -> ServeEnvironment:
    """Check the venv at ``root`` can run the served models; :class:`UserInputError` says what is wrong."""
    root = Path(root)
    python = root / "bin" / "python"
    if not python.exists():
        raise UserInputError(
            f"serving environment {str(root)!r} has no bin/python: make it with 'dacovid-export serve-env {root}'"
        )
    try:
        done = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserInputError(f"serving environment {str(root)!r}: its Python does not run ({one_line(str(exc))})") from exc
    if done.returncode != 0:
        raise UserInputError(f"serving environment {str(root)!r}: its Python failed: {one_line(done.stderr)[-300:]}")
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    numpy_version = probe.get("numpy_version")
    if not numpy_version:
        raise UserInputError(f"serving environment {str(root)!r} has no NumPy: {_rebuild_hint(root)}")
    if int(numpy_version.split(".")[0]) >= 2:
        raise UserInputError(
            f"serving environment {str(root)!r} has NumPy {numpy_version}: Triton 2.51's python stub is built on NumPy 1.x "
            f"and with NumPy 2 answers with empty or wrong tensors; {_rebuild_hint(root)}"
        )
    if not probe.get("pytriton"):
        raise UserInputError(f"serving environment {str(root)!r} lacks nvidia-pytriton (the tritonserver binary): {_rebuild_hint(root)}")
    if not probe.get("dacovid_export") or not probe.get("dacovid_version"):
        raise UserInputError(f"serving environment {str(root)!r} lacks dacovid-export (the served models' code): {_rebuild_hint(root)}")
    if probe["dacovid_version"] != __version__:
        raise UserInputError(
            f"serving environment {str(root)!r} has dacovid-export {probe['dacovid_version']}, this is {__version__}: "
            f"the served models would run other code; {_rebuild_hint(root)}"
        )
    server_root = Path(probe["pytriton"]) / "tritonserver"
    tritonserver = server_root / "bin" / "tritonserver"
    stub = server_root / "python_backend_stubs" / probe["python"] / "triton_python_backend_stub"
    backend = server_root / "backends" / "python"
    files = (backend / "libtriton_python.so", backend / "triton_python_backend_utils.py", stub)
    for path in (tritonserver, *files):
        if not path.is_file():
            raise UserInputError(
                f"serving environment {str(root)!r}: {path} is missing (no python stub for Python {probe['python']}?); "
                f"{_rebuild_hint(root)}"
            )
    return ServeEnvironment(
        root=root, python=python, python_version=probe["python"], libdir=Path(probe["libdir"]),
        numpy_version=numpy_version, dacovid_version=probe["dacovid_version"], tritonserver=tritonserver,
        backend_files=files,
    )  # fmt: skip


def _own_source() -> tuple[list[str], str]:
    """How to install this very package into the environment: its source tree (editable stays editable), or its release."""
    try:
        direct = metadata.distribution("dacovid-export").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
    if direct:
        info = json.loads(direct)
        url = info.get("url", "")
        if url.startswith("file://"):
            folder = url[len("file://") :]
            editable = bool(info.get("dir_info", {}).get("editable"))
            return (["-e", folder] if editable else [folder]), folder
    return [f"dacovid-export=={__version__}"], f"dacovid-export=={__version__}"


def create_serve_env(
    root: str | os.PathLike[str], *, overwrite: bool = False
) -> ServeEnvironment:
    """Make the venv at ``root`` from :data:`SERVE_REQUIREMENTS` and this package (no dependencies of its own), then check it.

    Uses this interpreter (the stub is chosen for its version, and its ``libpython``
    is the one the server is pointed at). A folder that already is a good serving
    environment is kept as it is (nothing installed); ``overwrite``: rebuild it anyway,
    or rebuild one that fails its check. Any other existing folder is an error.
    Each step is said on the ``dacovid_export.serve`` logger.
    """
    root = Path(root)
    if root.exists():
        if not overwrite:
            try:
                env = inspect_serve_env(root)
            except UserInputError as exc:
                raise UserInputError(f"{exc}; or choose another folder") from exc
            _log.info(f"serve-env: {root} is ready already (pass --overwrite to rebuild it)")
            return env
        if not (root / "pyvenv.cfg").is_file():
            raise UserInputError(f"{str(root)!r} exists and is not a virtual environment: refusing to replace it")
    base = getattr(sys, "_base_executable", sys.executable)
    package, described = _own_source()
    steps = [
        ([base, "-m", "venv", "--clear", str(root)], f"creating the venv {root} with {base}"),
        ([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", *SERVE_REQUIREMENTS],
         "installing " + " ".join(SERVE_REQUIREMENTS)),
        ([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", *package],
         f"installing dacovid-export from {described} (no dependencies: they are the pins above)"),
    ]  # fmt: skip
    for command, what in steps:
        _log.info(f"serve-env: {what}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = one_line(done.stderr or done.stdout)[-400:]
            raise UserInputError(f"serve-env: {what} failed (exit {done.returncode}): {tail}")
    env = inspect_serve_env(root)
    _log.info(f"serve-env: ready: Python {env.python_version}, NumPy {env.numpy_version}, {env.tritonserver}")
    return env

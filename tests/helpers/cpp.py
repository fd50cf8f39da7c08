"""Building cpp/ (the C++ runtime) for the tests: cmake against the installed OpenVINO wheel, once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["CPP_SOURCE", "build_cpp"]

CPP_SOURCE = Path(__file__).resolve().parents[2] / "cpp"


def _openvino_cmake_dir() -> str:
    try:
        from openvino.utils import get_cmake_path
    except ImportError:
        pytest.skip("the openvino wheel (its C++ CMake package) is not installed: pip install openvino")
    return str(get_cmake_path())


def build_cpp(build_dir: Path, *, sanitize: bool = False) -> Path:
    """Configure and build cpp/ into ``build_dir`` (dacovid_infer, preprocess_dump); skips when the tools are missing.

    A configure failure (no libpng/libjpeg headers, no OpenVINO package) skips with cmake's one-line reason;
    a compile error fails the test that asked for the build.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed: the C++ runtime (cpp/) cannot be built here")
    if shutil.which("g++") is None and shutil.which("clang++") is None and not os.environ.get("CXX"):
        pytest.skip("no C++ compiler (g++/clang++): the C++ runtime (cpp/) cannot be built here")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = [cmake, "-S", str(CPP_SOURCE), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release",
                 f"-DOpenVINO_DIR={_openvino_cmake_dir()}", f"-DDACOVID_SANITIZE={'ON' if sanitize else 'OFF'}"]  # fmt: skip
    if sanitize:
        configure.append("-DCMAKE_BUILD_TYPE=RelWithDebInfo")
    done = subprocess.run(configure, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        reason = next((line.strip() for line in done.stderr.splitlines() if line.strip() and "CMake Error" not in line), done.stderr)
        pytest.skip(f"cpp/ does not configure here: {reason}")
    built = subprocess.run([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)],
                           capture_output=True, text=True, timeout=1200, check=False)  # fmt: skip
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return build_dir

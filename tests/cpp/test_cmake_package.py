"""cpp/ embedded in a service: ``cmake --install`` + ``find_package(dacovid)``, and ``add_subdirectory``.

The consumer is cpp/README.md's example service loop, compiled as written there and run on an image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.cpp import CPP_SOURCE


def _service_source() -> str:
    readme = (CPP_SOURCE / "README.md").read_text()
    section = readme.split("## In a service", 1)[1]
    return re.findall(r"```cpp\n(.*?)```", section, flags=re.S)[0]


def _build_consumer(folder: Path, cmake_body: str, extra: list[str], *, build: bool = True) -> Path:
    folder.mkdir()
    (folder / "service.cpp").write_text(_service_source())
    (folder / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(service LANGUAGES CXX)\nset(CMAKE_CXX_STANDARD 17)\n"
        + cmake_body + "add_executable(service service.cpp)\ntarget_link_libraries(service PRIVATE dacovid::runtime)\n"
    )
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    steps = [["cmake", "-S", str(folder), "-B", str(folder / "build"), *generator, *extra]]
    for cmd in steps + ([["cmake", "--build", str(folder / "build")]] if build else []):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder / "build" / "service"


def _run_service(service: Path, model: Path, image: Path) -> str:
    done = subprocess.run([str(service)], input=f"{image}\n{image.parent / 'missing.png'}\n", capture_output=True, text=True,
                          timeout=120, cwd=model.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_installed_package_and_the_readme_service_loop(cpp_build: Path, tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    from openvino.utils import get_cmake_path

    prefix = tmp_path / "prefix"
    done = subprocess.run(["cmake", "--install", str(cpp_build), "--prefix", str(prefix)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (prefix / "include" / "dacovid" / "classifier.hpp").is_file() and (prefix / "bin" / "dacovid_infer").is_file()
    service = _build_consumer(tmp_path / "consumer", "find_package(dacovid REQUIRED)\n",
                              [f"-DCMAKE_PREFIX_PATH={prefix}", f"-DOpenVINO_DIR={get_cmake_path()}"])  # fmt: skip
    # the README's loop opens /models/model.int8.onnx: point it at the test model
    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 80), dtype=np.uint8), "L").save(image)
    source = (tmp_path / "consumer" / "service.cpp").read_text()
    assert '"/models/model.int8.onnx"' in source
    (tmp_path / "consumer" / "service.cpp").write_text(source.replace("/models/model.int8.onnx", str(tiny_fp32_onnx)))
    subprocess.run(["cmake", "--build", str(tmp_path / "consumer" / "build")], check=True, capture_output=True, timeout=900)
    lines = _run_service(service, tiny_fp32_onnx, image).splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{image}\t") and "\terror: " in lines[1] and "does not exist" in lines[1]


def test_add_subdirectory_configures(cpp_build: Path, tmp_path: Path) -> None:
    """The target a service links exists through add_subdirectory too (configured only: compiling the library
    a second time would add half a minute to every CI run for what the installed-package test already builds)."""
    from openvino.utils import get_cmake_path

    _build_consumer(tmp_path / "sub", f'add_subdirectory("{CPP_SOURCE}" dacovid)\n',
                    [f"-DOpenVINO_DIR={get_cmake_path()}", "-DDACOVID_TENSORRT=OFF"], build=False)  # fmt: skip

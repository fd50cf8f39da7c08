"""The C++ runtime built once per session (the build is the big cost of these tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cpp import build_cpp


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cpp(tmp_path_factory.mktemp("cpp-build"))


@pytest.fixture(scope="session")
def dacovid_infer(cpp_build: Path) -> Path:
    return cpp_build / "dacovid_infer"


@pytest.fixture(scope="session")
def preprocess_dump(cpp_build: Path) -> Path:
    return cpp_build / "preprocess_dump"

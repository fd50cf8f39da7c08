"""BenchConfig and its option parsing: every bad value is refused up front, quoting it."""

from __future__ import annotations

import pytest

from dacovid_export.bench.config import DEFAULT_ITERATIONS, BenchConfig, parse_int_list
from dacovid_export.core.errors import UserInputError


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"backend": "nosuch"}, "nosuch"),
        ({"device": "tpu"}, "tpu"),
        ({"batch_sizes": ()}, "empty"),
        ({"batch_sizes": (1, 0)}, "batch size=0"),
        ({"batch_sizes": (2, 2)}, "once"),
        ({"iterations": 5, "duration_s": 1.0}, "not both"),
        ({"iterations": 0}, "iterations=0"),
        ({"duration_s": -1.0}, "duration_s=-1.0"),
        ({"warmup": -1}, "warmup=-1"),
        ({"image_size": 16}, "image_size=16"),
        ({"threads": 0}, "threads=0"),
        ({"autocast": ("fp8",)}, "fp8"),
        ({"backend": "onnxruntime", "channels_last": True}, "PyTorch options"),
    ],
)
def test_bench_config_rejects_bad_values(kwargs: dict, fragment: str) -> None:
    with pytest.raises(UserInputError, match=fragment):
        BenchConfig(**kwargs)


def test_bench_config_iterations_default_and_duration() -> None:
    assert BenchConfig().effective_iterations == DEFAULT_ITERATIONS
    assert BenchConfig(iterations=3).effective_iterations == 3
    assert BenchConfig(duration_s=0.5).effective_iterations is None


def test_parse_int_list() -> None:
    assert parse_int_list("1, 8,32") == (1, 8, 32)
    with pytest.raises(UserInputError, match="1,x"):
        parse_int_list("1,x")
    with pytest.raises(UserInputError, match=">= 1"):
        parse_int_list("0")

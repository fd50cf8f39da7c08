"""core.validate: one shape for every int/number/fraction/flag error, quoting the bad value; bool is no number."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacovid_export.core.errors import UserInputError
from dacovid_export.core.validate import as_path, check_bool, check_fraction, check_int, check_number


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_int("n", 0, 1, 8), "n=0: give an integer from 1 to 8"),
        (lambda: check_int("n", True, 0), "n=True: give an integer >= 0"),
        (lambda: check_int("n", 2.0, 0), "n=2.0: give an integer >= 0"),
        (lambda: check_int("n", 9, 1, 8, why=" (the cap)"), "n=9: give an integer from 1 to 8 (the cap)"),
        (lambda: check_number("lr", 0.0, 0, above=True), "lr=0.0: give a finite number > 0"),
        (lambda: check_number("x", float("nan"), 0), "x=nan: give a finite number >= 0"),
        (lambda: check_number("s", 4000, 0, 3600), "s=4000: give a finite number from 0 to 3600"),
        (lambda: check_fraction("f", 1.5), "f=1.5: give a fraction between 0 and 1"),
        (lambda: check_fraction("f", 1.0, strict=True), "f=1.0: give a fraction strictly between 0 and 1"),
        (lambda: check_bool("flag", 1), "flag=1: give True or False"),
    ],
)
def test_bad_values_are_refused_in_one_shape(call, message: str) -> None:
    with pytest.raises(UserInputError) as caught:
        call()
    assert str(caught.value) == message


def test_good_values_come_back() -> None:
    assert check_int("n", 8, 1, 8) == 8
    assert check_number("lr", 1, 0, above=True) == 1.0 and isinstance(check_number("lr", 1, 0, above=True), float)
    assert check_fraction("f", 0) == 0.0
    assert check_bool("flag", False) is False
    assert as_path("a/b") == Path("a/b") and as_path(None) is None

"""Running a command and checking its failure: one ``error:`` line, no traceback (plain functions)."""

from __future__ import annotations

from typing import Any


def invoke(command: Any, args: Any = (), **kwargs: Any) -> Any:
    """Run a Click command in-process (arguments as strings); Click's ``Result``."""
    from click.testing import CliRunner

    return CliRunner().invoke(command, [str(a) for a in args], **kwargs)


def error_lines(text: str) -> list[str]:
    """The lines of ``text`` that start with ``error:`` (other lines, e.g. progress, allowed)."""
    return [line for line in text.splitlines() if line.startswith("error:")]


def one_error_line(text: str, *fragments: str) -> str:
    """``text`` (stderr, or a command's whole output) is exactly one ``error: ...`` line holding every fragment."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_one_line_error(result: Any, *fragments: str, code: int | None = 2, stream: str = "stderr") -> str:
    """A Click ``Result`` that exited ``code`` (any non-zero code for ``None``) with one ``error:`` line.

    ``stream`` is where that one line must be alone: ``"stderr"``, or ``"output"``
    (stdout and stderr together: nothing else printed at all).
    """
    if code is None:
        assert result.exit_code != 0, result.output
    else:
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return one_error_line(getattr(result, stream), *fragments)

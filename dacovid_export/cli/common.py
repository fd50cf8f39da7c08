"""What every command shares: turning library errors into one line and an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from dacovid_export.errors import DacovidError

__all__ = ["handle_errors", "not_yet_implemented", "NOT_IMPLEMENTED_EXIT"]

F = TypeVar("F", bound=Callable[..., Any])
NOT_IMPLEMENTED_EXIT = 2


def handle_errors(fn: F) -> F:
    """Run a command body; a :class:`DacovidError` becomes ``error: ...`` on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DacovidError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def not_yet_implemented(name: str) -> None:
    click.echo(f"error: '{name}' is not yet implemented in this version of dacovid-export", err=True)
    sys.exit(NOT_IMPLEMENTED_EXIT)

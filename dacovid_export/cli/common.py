"""What commands share: library errors and Click usage errors as one line and an exit code, and option groups."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from dacovid_export.core.errors import DacovidError
from dacovid_export.core.log import set_verbosity
from dacovid_export.data.dicom import DicomWarning

__all__ = [
    "int8_guard_options",
    "training_data_option",
    "OneLineErrorsCommand",
    "OneLineErrorsGroup",
    "handle_errors",
    "verbosity_options",
    "USAGE_EXIT",
]

F = TypeVar("F", bound=Callable[..., Any])
USAGE_EXIT = 2

# What allocators say when a request does not fit (torch CPU/CUDA, numpy, ONNX Runtime)
_ALLOCATION_FAILURES = ("can't allocate memory", "out of memory", "unable to allocate", "failed to allocate", "bad_alloc")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _out_of_memory(exc: BaseException) -> NoReturn:
    detail = " ".join(str(exc).split())[:160]
    _fail(
        "out of memory"
        + (f" ({detail})" if detail else "")
        + ": use a smaller --batch/--batch-size or --image-size, or a machine with more memory",
        USAGE_EXIT,
    )


def handle_errors(fn: F) -> F:
    """Run a command body; a :class:`DacovidError` becomes ``error: ...`` on stderr and its exit code.

    An allocation failure (MemoryError, or a runtime's out-of-memory error) is a
    request too large for this machine, not a bug: one line too, exit 2.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                shown = warnings.showwarning

                def show(message: Any, category: type[Warning], *rest: Any, **more: Any) -> None:
                    # a DICOM that is read anyway (not chest, not CR/DX): one "warning:" line, no source line
                    if issubclass(category, DicomWarning):
                        click.echo(f"warning: {message}", err=True)
                    else:
                        shown(message, category, *rest, **more)

                warnings.showwarning = show
                return fn(*args, **kwargs)
        except DacovidError as exc:
            _fail(str(exc), exc.exit_code)
        except MemoryError as exc:
            _out_of_memory(exc)
        except RuntimeError as exc:
            if any(text in str(exc).lower() for text in _ALLOCATION_FAILURES):
                _out_of_memory(exc)
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


class _OneLineErrors:
    """Click's usage errors (unknown option, missing argument, bad value) as one ``error:`` line, exit 2.

    Click prints usage, a hint and the error on three lines; a service log or a
    script wants the one line that says what to fix.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)  # type: ignore[misc]
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)  # type: ignore[misc]
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(" ".join(exc.format_message().split()) + hint, USAGE_EXIT)
        except click.ClickException as exc:
            _fail(" ".join(exc.format_message().split()), USAGE_EXIT)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        # non-standalone Click returns the exit code of ctx.exit() (--help, --version) or the command's value
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class OneLineErrorsCommand(_OneLineErrors, click.Command):
    """A :class:`click.Command` whose usage errors are one line."""


class OneLineErrorsGroup(_OneLineErrors, click.Group):
    """A :class:`click.Group` whose usage errors (its own and its subcommands') are one line."""


def _count_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    # -v/-q may stand on the group and on the command ("dacovid-export -q bench -v"): every context's counts add up,
    # and each invocation sets the level afresh (Click's test runner runs many in one process)
    counts = ctx.meta.setdefault("dacovid_export.verbosity", {})
    counts[(ctx.info_name, param.name)] = value or 0
    verbose = sum(v for (_, name), v in counts.items() if name == "verbose")
    quiet = sum(v for (_, name), v in counts.items() if name == "quiet")
    set_verbosity(verbose, quiet)


def verbosity_options(fn: F) -> F:
    """``-v``/``-q`` (repeatable): more or less of what the library says on stderr (default: notices and warnings)."""
    fn = click.option(
        "-q", "--quiet", count=True, expose_value=False, is_eager=True, callback=_count_verbosity,
        help="Say less on stderr: -q warnings only (no progress), -qq errors only.",
    )(fn)
    return click.option(
        "-v", "--verbose", count=True, expose_value=False, is_eager=True, callback=_count_verbosity,
        help="Say more on stderr (debug detail).",
    )(fn)


def training_data_option(fn: F) -> F:
    """``--training-data``: the checkpoint's training images, where it carries no record of them (guards and check)."""
    return click.option(
        "--training-data",
        type=click.Path(path_type=Path),
        default=None,
        metavar="DIR|split.json",
        help="The images that trained the checkpoint (a folder, or its run's split.json), for a checkpoint that carries "
        "no record of them (trained elsewhere or before dacovid-train recorded them): they are never validation or "
        "verdict images  [default: the record in the checkpoint, if any]",
    )(fn)


def int8_guard_options(fn: F) -> F:
    """``--min-agreement``, ``--validation-data`` and ``--training-data``: the FP16/INT8/BF16 accuracy guard."""
    fn = training_data_option(fn)
    fn = click.option(
        "--validation-data",
        type=click.Path(path_type=Path),
        default=None,
        metavar="DIR",
        help="FP16/INT8/BF16 guard's validation images, or a split.json (its held-out part); images that trained the "
        "checkpoint are left out  [default: half of --calib-data's unseen images (a split.json: of its held-out part; "
        "the other half is left for check), never used for calibration or the FP16 range check]",
    )(fn)
    return click.option(
        "--min-agreement",
        type=float,
        default=None,
        metavar="F",
        help="Accuracy guard: top-1 agreement with FP32 required on validation images; the costliest nodes leave "
        "INT8 (or FP16) until it holds (BF16 has no such lever), else nothing is written  "
        "[default: int8 0.99, fp16 0.995 (check's threshold), bf16 0.99]",
    )(fn)


def qat_options(flag_help: str) -> Callable[[F], F]:
    """``--qat`` (described by ``flag_help``) and the fine-tune's options, wherever a command makes INT8 with QAT."""
    from dacovid_export.calibration.qat import (
        DEFAULT_QAT_BATCH_SIZE,
        DEFAULT_QAT_EPOCHS,
        DEFAULT_QAT_LR,
    )

    options = [
        click.option("--qat", is_flag=True, help=flag_help),
        click.option("--qat-epochs", type=int, default=None, metavar="N", help=f"QAT epochs  [default: {DEFAULT_QAT_EPOCHS}]"),
        click.option("--qat-lr", type=float, default=None, metavar="LR", help=f"QAT learning rate (Adam)  [default: {DEFAULT_QAT_LR:g}]"),
        click.option("--qat-batch-size", type=int, default=None, metavar="N", help=f"QAT batch size  [default: {DEFAULT_QAT_BATCH_SIZE}]"),
        click.option("--qat-device", default=None, metavar="auto|cpu|cuda",
                     help="Where QAT fine-tunes  [default: auto: CUDA when there is one, else the CPU]"),
        click.option("--train-data", type=click.Path(path_type=Path), default=None, metavar="DIR",
                     help="QAT images: the checkpoint's training images, a folder or split.json  [default: the split.json "
                     "next to the checkpoint]; never the guard's validation images."),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):  # listed in --help in the order above
            fn = option(fn)
        return fn

    return decorate


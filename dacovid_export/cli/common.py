"""What commands share: library errors and Click usage errors as one line and an exit code, and option groups."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

from dacovid_export.core.errors import DacovidError
from dacovid_export.core.log import set_verbosity
from dacovid_export.core.validate import is_int
from dacovid_export.data.dicom import DicomWarning

if TYPE_CHECKING:
    from dacovid_export.calibration.config import PrecisionConfig
    from dacovid_export.calibration.qat import QatConfig

__all__ = [
    "field_default",
    "int8_guard_options",
    "precision_options",
    "PrecisionFlags",
    "qat_options",
    "QatFlags",
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
        sys.exit(rv if is_int(rv) else 0)


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
    from dacovid_export.calibration.fp16_guard import DEFAULT_FP16_MIN_AGREEMENT
    from dacovid_export.calibration.guard import DEFAULT_MIN_AGREEMENT

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
        f"[default: int8 {DEFAULT_MIN_AGREEMENT}, fp16 {DEFAULT_FP16_MIN_AGREEMENT} (check's threshold), bf16 "
        f"{DEFAULT_MIN_AGREEMENT}]",
    )(fn)


def field_default(config: Any, name: str) -> Any:
    """The default of option ``name`` where the library keeps it: a dataclass's field default, a library function's
    keyword default, or an instance's value (a command's own defaults, e.g. the pipeline's short bench series); what
    an option shows in ``--help`` and passes when not given."""
    if callable(config) and not isinstance(config, type):
        default = inspect.signature(config).parameters[name].default
        if default is inspect.Parameter.empty:
            raise KeyError(f"{config.__name__}({name}) has no default")
        return default
    if not isinstance(config, type):
        return getattr(config, name)
    field = {f.name: f for f in dataclasses.fields(config)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise KeyError(f"{config.__name__}.{name} has no default")


def _packed(fn: F, name: str, keys: tuple[str, ...], pack: Callable[..., Any]) -> F:
    """``fn`` taking the values of the options ``keys`` as one record ``name`` (``pack(**values)``), not one by one."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs[name] = pack(**{key: kwargs.pop(key) for key in keys})
        return fn(*args, **kwargs)

    return cast(F, wrapper)


@dataclasses.dataclass(frozen=True)
class QatFlags:
    """The values of ``--qat`` and the fine-tune's options as given (``None``: not given): :meth:`config` makes them one
    :class:`QatConfig`; the precision step takes them as they are (:meth:`PrecisionFlags.config`)."""

    qat: bool
    qat_epochs: int | None
    qat_lr: float | None
    qat_batch_size: int | None
    qat_device: str | None
    train_data: Path | None

    def config(self, seed: int) -> "QatConfig | None":
        """The fine-tune (seeded with ``seed``), or ``None`` without ``--qat``; its options without it are refused."""
        from dacovid_export.calibration.config import check_qat_options
        from dacovid_export.calibration.qat import QatConfig

        check_qat_options(self)
        if not self.qat:
            return None
        return QatConfig.given(
            seed=seed, epochs=self.qat_epochs, lr=self.qat_lr, batch_size=self.qat_batch_size, device=self.qat_device
        )


def qat_options(flag_help: str) -> Callable[[F], F]:
    """``--qat`` (described by ``flag_help``) and the fine-tune's options, wherever a command makes INT8 with QAT.

    The command takes them as one :class:`QatFlags`, ``qat``.
    """
    from dacovid_export.calibration.qat import QatConfig

    options = [
        click.option("--qat", is_flag=True, help=flag_help),
        click.option("--qat-epochs", type=int, default=None, metavar="N",
                     help=f"QAT epochs  [default: {field_default(QatConfig, 'epochs')}]"),
        click.option("--qat-lr", type=float, default=None, metavar="LR",
                     help=f"QAT learning rate (Adam)  [default: {field_default(QatConfig, 'lr'):g}]"),
        click.option("--qat-batch-size", type=int, default=None, metavar="N",
                     help=f"QAT batch size  [default: {field_default(QatConfig, 'batch_size')}]"),
        click.option("--qat-device", default=None, metavar="auto|cpu|cuda",
                     help="Where QAT fine-tunes  [default: auto: CUDA when there is one, else the CPU]"),
        click.option("--train-data", type=click.Path(path_type=Path), default=None, metavar="DIR",
                     help="QAT images: the checkpoint's training images, a folder or split.json  [default: the split.json "
                     "next to the checkpoint]; never the guard's validation images."),
    ]
    keys = tuple(f.name for f in dataclasses.fields(QatFlags))

    def decorate(fn: F) -> F:
        fn = _packed(fn, "qat", keys, QatFlags)
        for option in reversed(options):  # listed in --help in the order above
            fn = option(fn)
        return fn

    return decorate


@dataclasses.dataclass(frozen=True)
class PrecisionFlags:
    """The precision step's options as a command was given them (``None``: not given): :meth:`config` is the one
    place they become a :class:`PrecisionConfig`."""

    calib_data: Path | None
    calib_size: int | None
    calib_method: str | None
    min_agreement: float | None
    validation_data: Path | None
    training_data: Path | None
    qat: QatFlags

    def config(
        self, precision: str, *, seed: int, cache_dir: Path | None, atol: float | None, rtol: float | None
    ) -> "PrecisionConfig":
        """The step's frozen options for ``precision`` (validated there)."""
        from dacovid_export.calibration.config import PrecisionConfig

        return PrecisionConfig(
            precision=precision,
            calib_data=self.calib_data,
            calib_size=self.calib_size,
            calib_method=self.calib_method,  # type: ignore[arg-type]
            seed=seed,
            cache_dir=cache_dir,
            atol=atol,
            rtol=rtol,
            min_agreement=self.min_agreement,
            validation_data=self.validation_data,
            training_data=self.training_data,
            **dataclasses.asdict(self.qat),  # QatFlags' fields are PrecisionConfig's qat* and train_data, by name
        )


def precision_options(qat_help: str) -> Callable[[F], F]:
    """``--calib-data``, ``--calib-size``, ``--calib-method``, the accuracy guard's and the fine-tune's options: the
    precision step's, taken by the command as one :class:`PrecisionFlags`, ``step``."""
    from dacovid_export.calibration.config import DEFAULT_CALIB_SIZE

    options = [
        click.option("--calib-data", type=click.Path(path_type=Path), default=None, metavar="DIR",
                     help="Calibration images, or a dacovid-train split.json (its training images); needed for int8, "
                     "optional range data for fp16."),
        click.option("--calib-size", type=int, default=None, metavar="N",
                     help=f"Calibration images to use  [default: {DEFAULT_CALIB_SIZE}]"),
        click.option("--calib-method", type=click.Choice(["entropy", "max"]), default=None,
                     help="INT8 calibration  [default: entropy, then max if entropy misses --min-agreement; the better "
                     "is kept]"),
    ]
    keys = tuple(f.name for f in dataclasses.fields(PrecisionFlags))

    def decorate(fn: F) -> F:
        fn = _packed(fn, "step", keys, PrecisionFlags)
        fn = qat_options(qat_help)(fn)
        fn = int8_guard_options(fn)
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate

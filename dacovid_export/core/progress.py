"""Progress: the one helper that draws a progress bar (:func:`progress_bar`), and timing of named steps.

Every bar of the package (training, parity, bench, TensorRT's build phases) comes
from :func:`progress_bar`, so all are on stderr, transient and silenced by ``-q``.

One step timer for every stage that reports its steps (the pipeline, the ONNX
export, the engine build). Two ways to use it:

- ``with timer.step("parse", "model.onnx"):`` times the block; or
- ``timer.start("graph checks", key="checks")`` ... ``timer.stop()`` when a
  step does not fit one block.

``timer.seconds`` maps each step's key (its name unless ``key`` is given) to its
wall time in seconds, whether or not anything is shown. With ``total`` the
lines are numbered ``[i/total]``. Lines go to the ``dacovid_export.<stage>``
logger (``stage`` names it; stderr at the default verbosity); ``bar=True`` shows a single tqdm bar instead of lines, and
then the timer must be used as a context manager so the bar is closed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from dacovid_export.core.log import get_logger, showing_progress

__all__ = ["StepTimer", "progress_bar"]


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    stream: Any = None,
    bar_format: str | None = None,
    auto: bool = False,
    leave: bool = False,
) -> Any:
    """A transient tqdm bar on stderr (or ``stream``); hidden when ``enabled`` is false or under ``-q``.

    ``leave=True`` keeps the finished bar on screen (a per-epoch record). ``auto=True`` also hides it when the stream is not a terminal (logs, CI): tqdm's
    ``disable=None``. Use it as tqdm: a context manager, ``update``, or iterate it.
    """
    from tqdm import tqdm

    disable: bool | None = not (enabled and showing_progress())
    if auto and not disable:
        disable = None
    kwargs: dict[str, Any] = {"bar_format": bar_format} if bar_format is not None else {}
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=stream if stream is not None else sys.stderr,
        disable=disable,
        leave=leave,
        **kwargs,
    )


class StepTimer:
    """Times named steps and, when ``enabled``, says each one as it starts and ends."""

    def __init__(
        self,
        enabled: bool = True,
        total: int | None = None,
        *,
        decimals: int = 1,
        bar: bool = False,
        stage: str = "core",
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.decimals = decimals
        self.seconds: dict[str, float] = {}
        self.index = 0
        self._log = get_logger(stage).info
        self._use_bar = bar
        self._bar: Any = None
        self._current: tuple[str, str, float] | None = None  # (name, key, start)

    # -- context manager: only needed for the bar, harmless otherwise

    def __enter__(self) -> "StepTimer":
        if self.enabled and self._use_bar:
            # auto: silent when stderr is not a terminal (logs, CI)
            self._bar = progress_bar(total=self.total, bar_format="{desc} [{n_fmt}/{total_fmt}] {elapsed}", auto=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- steps

    def start(self, name: str, detail: str = "", *, key: str | None = None) -> None:
        """Begin step ``name``; its seconds are recorded under ``key`` (default: the name) by :meth:`stop`."""
        self.index += 1
        self._current = (name, key or name, time.perf_counter())
        if self._bar is not None:
            self._bar.set_description_str(name)
            self._bar.refresh()
        else:
            self._say(f"{self._prefix()}{name} ..." + (f" {detail}" if detail else ""))

    def stop(self) -> float:
        """End the current step; returns and records its seconds."""
        if self._current is None:
            raise RuntimeError("StepTimer.stop() without a step started")
        name, key, t0 = self._current
        self._current = None
        seconds = time.perf_counter() - t0
        self.seconds[key] = seconds
        if self._bar is not None:
            self._bar.update(1)
        else:
            self._say(f"{self._prefix()}{name}: {seconds:.{self.decimals}f} s")
        return seconds

    @contextmanager
    def step(self, name: str, detail: str = "", *, key: str | None = None) -> Iterator[None]:
        """Time the block as step ``name``; its seconds are recorded even when the block raises."""
        self.start(name, detail, key=key)
        try:
            yield
        finally:
            self.stop()

    def note(self, text: str) -> None:
        """An indented line under the current step (nothing in bar mode or when disabled)."""
        if self._bar is None:
            self._say(f"      {text}")

    def _prefix(self) -> str:
        return f"[{self.index}/{self.total}] " if self.total else ""

    def _say(self, line: str) -> None:
        if self.enabled:
            self._log(line)

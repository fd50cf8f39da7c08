"""Progress of multi-step work on stderr (a tqdm line per step) and the wall time of each step."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["StepProgress"]


class StepProgress:
    """Step-wise progress on stderr (tqdm) and wall time per step."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._bar: Any = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> "StepProgress":
        if self.enabled:
            from tqdm import tqdm

            # disable=None: silent when stderr is not a terminal (logs, CI)
            self._bar = tqdm(
                total=self.total,
                file=sys.stderr,
                bar_format="{desc} [{n_fmt}/{total_fmt}] {elapsed}",
                leave=False,
                disable=None,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def start(self, name: str) -> None:
        self._t0 = time.perf_counter()
        if self._bar is not None:
            self._bar.set_description_str(name)
            self._bar.refresh()

    def elapsed(self) -> float:
        seconds = time.perf_counter() - self._t0
        if self._bar is not None:
            self._bar.update(1)
        return seconds

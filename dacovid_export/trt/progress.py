"""TensorRT's build progress (``trt.IProgressMonitor``) drawn as tqdm bars."""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

from dacovid_export.core.progress import progress_bar

__all__ = ["make_progress_monitor"]


def make_progress_monitor(trt: ModuleType, *, stream: Any = None) -> Any:
    """A ``trt.IProgressMonitor`` that shows TensorRT's top-level build phases as tqdm bars on stderr.

    Nested phases are not drawn (their names and counts change between TensorRT
    versions). The callbacks may come from several builder threads.
    """
    out = stream if stream is not None else sys.stderr

    # TensorRT's classes exist only once the runtime is imported (lazily): a base of type Any
    base: Any = trt.IProgressMonitor

    class _Monitor(base):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is not None:
                return
            with self._lock:
                self._bars[phase_name] = progress_bar(total=num_steps, desc=f"TensorRT: {phase_name}", stream=out)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.n = step + 1
                    bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return _Monitor()

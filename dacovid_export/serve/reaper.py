"""What ends a ``serve``'s tritonserver, its stubs, shared memory and scratch when ``serve`` itself dies unannounced.

SIGKILL (or the OOM killer) gives ``serve`` no chance to stop anything: tritonserver, in a
process group of its own so that stopping it reaches every stub, would go on serving with
its shared-memory regions and scratch folder. Two things make sure it does not:

- tritonserver is started with a parent-death signal (:func:`set_parent_death_signal`, the
  Linux ``prctl(PR_SET_PDEATHSIG)``): the kernel sends it SIGTERM when ``serve`` dies;
- this small watcher, started by ``serve`` as its child, notices that its parent is gone
  (it is re-parented) and then ends tritonserver's whole process group (SIGTERM, then
  SIGKILL), and removes the regions with the server's prefix and the scratch folder.

Run as a script by path (``python reaper.py SERVE_PID SERVER_PID SCRATCH PREFIX``): standard
library only, so it starts in a fraction of a second and imports nothing of the package.
``serve`` ends it (SIGTERM) once it has stopped the server itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

__all__ = ["set_parent_death_signal", "main"]

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int = signal.SIGTERM) -> None:
    """In a child before ``exec`` (``preexec_fn``): the kernel sends ``signum`` when the parent dies (Linux only)."""
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_group(pgid: int, grace_s: float) -> None:
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        if not _group_alive(pgid):
            return


def main(argv: list[str]) -> int:
    serve_pid, server_pid, scratch, prefix = int(argv[0]), int(argv[1]), Path(argv[2]), argv[3]
    grace_s = float(argv[4]) if len(argv) > 4 else 5.0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches serve's whole terminal group: serve handles it
    while os.getppid() == serve_pid:  # re-parented: serve is gone
        time.sleep(0.2)
    _end_group(server_pid, grace_s)
    with contextlib.suppress(OSError):
        for region in Path("/dev/shm").glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

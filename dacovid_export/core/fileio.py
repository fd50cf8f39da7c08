"""Files written atomically, folders proved writable, scratch that never passes for an artifact.

- :func:`probe_writable` proves a folder takes files (read-only folders and file
  systems, ``/proc``) by creating one; :func:`same_file` sees one file under two names.
  (Which outputs would destroy an input is :mod:`dacovid_export.artifacts.outputs`.)
- :func:`atomic_path` writes through a temporary file and a rename, so an
  interrupted run never leaves a file that looks valid; an OS error on the way
  (disk full, permissions changed meanwhile) becomes one :class:`UserInputError` line.
- :func:`scratch_dir` is the marked scratch folder of a multi-step write; a later run
  to the same output sweeps scratch left by a killed one, and
  :func:`refuse_scratch` keeps anything inside one from being loaded as an artifact.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dacovid_export.core.errors import OutputNotWritableError, UserInputError

__all__ = [
    "PathLike",
    "pid_alive",
    "SCRATCH_MARKER",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "file_identity",
    "nearest_existing",
    "probe_writable",
    "refuse_scratch",
    "same_file",
    "scratch_dir",
    "sha256_file",
    "verify_sha256",
]

PathLike = str | os.PathLike[str]

# A file in every scratch folder: what it is, and the pid of the run that made it
SCRATCH_MARKER = "DACOVID-SCRATCH-NOT-AN-ARTIFACT"
_SCRATCH_INFIX = ".scratch-"
# atomic_path's temporary file: ".<name>.partial-<pid>-<random>.tmp<suffix>"
_PARTIAL_INFIX = ".partial-"
_PARTIAL_RE = re.compile(r"^\..+\.partial-(\d+)-[^.]*\.tmp(\.[^.]*)?$")


def _reason(exc: OSError) -> str:
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc)


def _unwritable(path: PathLike, exc: OSError, label: str | None = None) -> OutputNotWritableError:
    where = f"{label} {str(path)!r}" if label else repr(str(path))
    return OutputNotWritableError(f"cannot write {where}: {_reason(exc)}")


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched.
    The temporary name keeps the suffix so writers that dispatch on it still work.
    An :class:`OSError` while creating, writing or renaming becomes a
    :class:`UserInputError` naming ``target`` and the reason.
    """
    target = Path(target)
    created: list[Path] = []
    try:
        created = _make_folders(target.parent)
        _sweep_partial(target)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}{_PARTIAL_INFIX}{os.getpid()}-", suffix=f".tmp{target.suffix}", dir=target.parent
        )
        os.close(fd)
    except OSError as exc:
        _remove_empty(created)
        raise _unwritable(target, exc) from exc
    tmp = Path(tmp_name)
    done = False
    try:
        try:
            yield tmp
            # mkstemp makes 0600 files; artifacts must be readable by a service running as
            # another user, so give them the permissions a plain open() would have.
            if tmp.exists():
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
            done = True
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR):
                raise _unwritable(target, exc) from exc
            raise
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()
        if not done:
            _remove_empty(created)


def _make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first, so a failed write can take them back."""
    missing = []
    probe = Path(os.path.abspath(folder))
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(created: list[Path]) -> None:
    """Remove folders this run created that are still empty: bad input leaves no empty output folders."""
    for folder in created:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (another write landed there) or gone: keep it and its parents


def _sweep_partial(target: Path) -> None:
    """Remove temporary files a killed writer left for ``target`` (their pid, in the name, is gone)."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}{_PARTIAL_INFIX}*"):
        match = _PARTIAL_RE.match(leftover.name)
        if match and leftover.is_file() and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(target: PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: PathLike, obj: Any, default: Callable[[Any], Any] | None = None) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=default) + "\n")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: str, *, recorded_in: str) -> str:
    """The file's sha256 when it equals ``expected``; otherwise :class:`UserInputError` (modified or corrupt)."""
    actual = sha256_file(path)
    if actual.lower() != str(expected).lower():
        raise UserInputError(
            f"{str(path)!r} does not match the sha256 recorded in {recorded_in} ({str(expected)[:12]}..., the file "
            f"is {actual[:12]}...): it was modified or damaged after it was written; rebuild or re-copy it"
        )
    return actual


# ---------------------------------------------------------------------------
# output checks


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: equal resolved paths, or the same inode (hard links)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return False


def file_identity(path: PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of the file ``path`` names after symlinks: equal for one file under any name; None if unreadable.

    :func:`same_file` for many files at once (compare keys instead of every pair).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def nearest_existing(path: PathLike) -> Path:
    """``path`` or its closest existing ancestor: where a write to ``path`` would have to start."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writable(folder: Path, target: PathLike, label: str | None) -> None:
    """Create and remove a file in ``folder``: the only test that root, read-only mounts and /proc all answer truly."""
    if not folder.is_dir():
        raise UserInputError(
            f"cannot write {label + ' ' if label else ''}{str(target)!r}: {str(folder)!r} is a file, not a folder"
        )
    try:
        fd, name = tempfile.mkstemp(prefix=".dacovid-write-test.", dir=folder)
    except OSError as exc:
        where = f"{label} {str(target)!r}" if label else repr(str(target))
        raise OutputNotWritableError(
            f"cannot write {where}: no file can be created in {str(folder)!r} ({_reason(exc)})"
        ) from exc
    os.close(fd)
    os.unlink(name)


# ---------------------------------------------------------------------------
# scratch folders


@contextlib.contextmanager
def scratch_dir(output: PathLike) -> Iterator[Path]:
    """A marked scratch folder beside ``output`` (same file system, so the final rename is atomic).

    Removed on exit. Scratch that a killed run left for the same output is swept
    first (unless the run that made it is still alive). Its name and marker say
    what it is, and :func:`refuse_scratch` keeps its files from being used as artifacts.
    """
    output = Path(output)
    created: list[Path] = []
    try:
        created = _make_folders(output.parent)
        _sweep_scratch(output)
        folder = Path(tempfile.mkdtemp(prefix=f".{output.name}{_SCRATCH_INFIX}", dir=output.parent))
        (folder / SCRATCH_MARKER).write_text(
            f"pid {os.getpid()}\nScratch of an unfinished dacovid-export run writing {output.name}; never an artifact. "
            "Safe to delete; the next run to the same output removes it.\n",
            encoding="utf-8",
        )
    except OSError as exc:
        _remove_empty(created)
        raise _unwritable(output, exc) from exc
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        # on success the output now sits in those folders, so this only removes them after a failure
        _remove_empty(created)


def _sweep_scratch(output: Path) -> None:
    for folder in output.parent.glob(f".{glob.escape(output.name)}{_SCRATCH_INFIX}*"):
        marker = folder / SCRATCH_MARKER
        if not (folder.is_dir() and marker.is_file()):
            continue
        if _alive(_marker_pid(marker)):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _marker_pid(marker: Path) -> int | None:
    try:
        first = marker.read_text(encoding="utf-8").split("\n", 1)[0]
        return int(first.removeprefix("pid "))
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True  # this run's own scratch (a step nested in another)
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts: it cannot be signalled, but it lives)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_scratch(path: PathLike) -> None:
    """:class:`UserInputError` when ``path`` is an unfinished run's file: in a scratch folder, or a partial write.

    Every artifact reader calls it (ONNX, engine sidecar, checkpoint), so no entry
    point can load another run's unverified file. This run's own scratch and partial
    files (its pid in the marker or name) stay readable: a multi-step write checks
    what it made before publishing it.
    """
    match = _PARTIAL_RE.match(Path(path).name)
    if match and int(match.group(1)) != os.getpid():
        raise UserInputError(
            f"{str(path)!r} is the temporary file of an unfinished dacovid-export write, never verified: it is not an "
            "artifact; delete it (the next write to the same output removes it too)"
        )
    for parent in Path(os.path.abspath(path)).parents:
        marker = parent / SCRATCH_MARKER
        if marker.is_file() and _marker_pid(marker) != os.getpid():
            raise UserInputError(
                f"{str(path)!r} is scratch of an interrupted dacovid-export run (folder {str(parent)!r}), never "
                "verified: it is not an artifact; delete the folder or rerun the command that was interrupted"
            )

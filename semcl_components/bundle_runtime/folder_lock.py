"""``FolderLock``: one run at a time in a folder it writes, with a message naming the run that holds it.

Training holds one on its ``ckpt_dir`` (:class:`~semcl_components.bundle_runtime.handlers.CheckpointResumer`); evaluation and
inference on their ``output_dir`` (:func:`lock_for_run`, called from the configs' ``run``); the benchmark on its
results and work folders. The lock itself is ``filelock``'s (``flock`` on Unix); this module adds the record of the
holder and the messages.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

__all__ = ["FolderInUseError", "FolderLock", "lock_for_run"]

CHECKPOINT_CONFLICT = "resume from and overwrite each other's checkpoints"


class FolderInUseError(RuntimeError):
    """Another process holds the lock of a folder."""


class FolderLock:
    """An exclusive ``filelock.FileLock`` on ``<folder>/.lock``, held from :meth:`acquire` until :meth:`release` or
    process exit.

    Two runs writing checkpoints and ``model.pt`` into one folder would resume from and overwrite each other's files
    without a word. The operating system drops the lock when its process dies (even by ``kill -9``), so a lock never
    outlives its run and needs no clean-up. The lock file records the holder's pid, host, start time and command line
    for the message a second run gets (filelock >= 4 leaves that record alone; 3.x empties the file when it tries the
    lock, and the message then says "another process").

    Args:
        folder: the folder to lock; created if needed.
        purpose: what the folder is, for messages (e.g. ``"ckpt_dir"``).
        holds: what the run writes there, for the message about an unwritable folder (``"{holds} go there"``).
        conflict: what two runs in the folder would do (``"Two runs in one folder would {conflict}"``).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        purpose: str = "folder",
        holds: str = "checkpoints",
        conflict: str = CHECKPOINT_CONFLICT,
    ) -> None:
        self.folder = Path(folder)
        self.purpose = purpose
        self.holds = holds
        self.conflict = conflict
        self.path = self.folder / ".lock"
        self._lock = FileLock(self.path, thread_local=False)  # e.g. released by another thread than took it

    def acquire(self) -> None:
        """Take the lock, or raise naming the process that has it.

        Raises:
            PermissionError: the folder or its lock file cannot be written (e.g. a read-only ``ckpt_dir``).
            FolderInUseError: another process holds the lock.
        """
        if self._lock.is_locked:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout=0)
        except Timeout as error:
            raise FolderInUseError(
                f"{self.purpose} {self.folder} is in use by {self._holder()}. Two runs in one folder would "
                f"{self.conflict}: wait for that run to end, or give this run another {self.purpose}."
            ) from error
        except OSError as error:
            raise PermissionError(
                f"cannot write to {self.purpose} {self.folder} ({type(error).__name__}: {error}); {self.holds} go "
                "there, so give a writable folder."
            ) from error
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        record = f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {' '.join(sys.argv)}\n"
        try:
            self.path.write_text(record, encoding="utf-8")
        except OSError:  # the record is for messages only; the lock holds without it
            pass

    def _holder(self) -> str:
        """The record of the process that holds the lock, as its :meth:`acquire` wrote it."""
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        """Drop the lock (the lock file stays; it is empty of meaning without a holder)."""
        self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked


_HELD: dict[str, FolderLock] = {}
_HELD_GUARD = threading.Lock()


def _is_rank_zero() -> bool:
    """Whether this process writes a run's files: not a torchrun rank other than 0 (``RANK``), initialised or not."""
    import ignite.distributed as idist

    return os.environ.get("RANK", "0").strip() in ("", "0") and idist.get_rank() == 0


def lock_for_run(
    folder: str | os.PathLike, purpose: str, holds: str = "outputs", conflict: str | None = None, after: Any = None
) -> FolderLock | None:
    """Lock ``folder`` for the rest of this process: a step of a workflow's ``run``, before anything is written there.

    The lock is kept in this module, so it lasts until the process ends (the operating system drops it then, also
    after ``kill -9``); a second call for the same folder in this process returns the same lock. Under torchrun only
    rank 0 locks (it writes the files; the other ranks would be refused by rank 0's lock).

    Args:
        folder: the folder the workflow writes (created if needed).
        purpose: the setting that names it, for messages (``"output_dir"``).
        holds: what the workflow writes there (``"segmentations"``).
        conflict: what two runs in the folder would do; default: overwrite each other's ``holds``.
        after: not used: a config names its checked inputs here (``after=@dataset_data``) so that they are read first,
            and an input refused by name leaves no output folder behind.

    Returns:
        The held lock; ``None`` on a rank other than 0.

    Raises:
        FolderInUseError: another process holds the folder (the message names the folder and that process).
        PermissionError: the folder cannot be written.
    """
    if not _is_rank_zero():
        return None
    key = os.path.realpath(folder)
    with _HELD_GUARD:
        lock = _HELD.get(key)
        if lock is None:
            lock = FolderLock(folder, purpose, holds, conflict or f"overwrite and mix each other's {holds}")
            lock.acquire()
            _HELD[key] = lock
        return lock

"""``FolderLock``: one run at a time in a checkpoint folder, with a message naming the run that holds it."""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

__all__ = ["FolderInUseError", "FolderLock"]


class FolderInUseError(RuntimeError):
    """Another process holds the lock of a folder."""


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.lock``, held from :meth:`acquire` until :meth:`release` or process exit.

    Two runs writing checkpoints and ``model.pt`` into one folder would resume from and overwrite each other's files
    without a word. The operating system drops a ``flock`` when its process dies (even by ``kill -9``), so a lock never
    outlives its run and needs no clean-up. The lock file records the holder's pid, host, start time and command line
    for the message a second run gets.

    Args:
        folder: the folder to lock; created if needed.
        purpose: what the folder is, for messages (e.g. ``"ckpt_dir"``).
    """

    def __init__(self, folder: str | os.PathLike, purpose: str = "folder") -> None:
        self.folder = Path(folder)
        self.purpose = purpose
        self.path = self.folder / ".lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise naming the process that has it.

        Raises:
            PermissionError: the folder or its lock file cannot be written (e.g. a read-only ``ckpt_dir``).
            FolderInUseError: another process holds the lock.
        """
        if self._handle is not None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise PermissionError(
                f"cannot write to {self.purpose} {self.folder} ({type(error).__name__}: {error}); checkpoints go "
                "there, so give a writable folder."
            ) from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderInUseError(
                f"{self.purpose} {self.folder} is in use by {holder}. Two runs in one folder would resume from and "
                f"overwrite each other's checkpoints: wait for that run to end, or give this run another {self.purpose}."
            ) from error
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {' '.join(sys.argv)}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Drop the lock (the lock file stays; it is empty of meaning without a holder)."""
        if self._handle is None:
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

"""SIGTERM as an exception: a terminated run ends through its handlers, which record how it ended.

Python ends a process on SIGTERM (what ``kill PID``, a job scheduler's time limit or a container stop sends) at once,
running no ``finally`` block and no ignite ``EXCEPTION_RAISED`` handler, so a run summary would keep saying
``running``. While a :class:`SigtermAsException` is installed, SIGTERM instead raises :class:`Terminated` in the main
thread; ignite hands it to the engine's exception handlers, and the process still ends with status 143 (128 + 15).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["SigtermAsException", "Terminated"]

logger = logging.getLogger(__name__)


class Terminated(SystemExit):
    """Raised when the process receives a termination signal; exits with ``128 + signal number``, as a shell shows."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name

    def __str__(self) -> str:
        return f"terminated by {self.signal_name}"


class SigtermAsException:
    """While installed, SIGTERM raises :class:`Terminated` in the main thread instead of ending the process at once.

    ``install()`` takes over SIGTERM only where Python would otherwise end the process (the default disposition) and
    only from the main thread (where Python allows it); otherwise it does nothing, so a server or launcher with its
    own handler keeps it. ``restore()`` gives the previous disposition back. A child process that inherited the
    handler (a fork, e.g. a ``DataLoader`` worker) ends at once, as it would by default.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._owner: int | None = None

    @property
    def installed(self) -> bool:
        return self._owner is not None

    def install(self) -> None:
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._previous = signal.signal(signal.SIGTERM, self._raise)
        self._owner = os.getpid()

    def restore(self) -> None:
        if not self.installed:
            return
        if os.getpid() == self._owner and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
        self._owner = None

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:  # a forked child: end as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.restore()  # a second SIGTERM ends the process at once
        logger.warning(f"received {signal.Signals(signum).name}: stopping the run.")
        raise Terminated(signum)

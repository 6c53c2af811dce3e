"""Running bundle workflows as a user types them: ``python -m monai.bundle run`` subprocesses, logged and measured.

The demo and the benchmark drive every stage through the bundle's own configs, so what they measure is what a user
gets. :func:`run_logged` runs one command, writes its whole output to a log file, shows one progress line for it
(:class:`~semcl_tools.progress.WorkflowProgress`: epoch, key metric, elapsed and estimated time; ignite's per-epoch
lines stay in the log), and returns its wall time and the peak memory of that process alone. On Linux the command
gets SIGTERM when the process that started it dies, even by ``kill -9`` (:func:`end_with_parent`), so a killed
benchmark or demo leaves no workflow training on into a folder that a resumed run would use.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .progress import WorkflowProgress, emit

__all__ = ["BundleRunError", "RunResult", "bundle_command", "end_with_parent", "run_logged"]

ECHOED_MARKERS = ("resumed from",)
"""Log lines echoed whole besides the progress line: a run that continues an earlier one says so."""


class BundleRunError(RuntimeError):
    """A bundle command exited with an error."""


@dataclass(frozen=True)
class RunResult:
    """Wall time (s), CPU time (s: user + system) and peak resident memory (MB) of one finished command; CPU time
    well below ``threads x seconds`` means the command waited for a CPU (the machine was shared)."""

    seconds: float
    peak_memory_mb: float
    cpu_seconds: float = 0.0


def bundle_command(
    configs_dir: str | os.PathLike, configs: Sequence[str], overrides: Mapping[str, object]
) -> list[str]:
    """``python -m monai.bundle run --config_file <configs> --bundle_root <bundle> --key value ...`` with this
    interpreter.

    ``--bundle_root`` is the bundle folder of the first config (the parent of its ``configs/`` folder) unless
    ``overrides`` names one: the configs' ``bundle_root`` is the working directory (the model zoo's convention), and
    the command runs from anywhere. Lists are written as JSON (``[64,64,64]``) and everything else as ``str(value)``.
    """
    files = [str(Path(configs_dir) / c) for c in configs]
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(f"'{f}'" for f in files) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg]
    if "bundle_root" not in overrides:
        command += ["--bundle_root", os.path.dirname(os.path.dirname(os.path.abspath(files[0])))]
    for key, value in overrides.items():
        command += [f"--{key}", json.dumps(value) if isinstance(value, (list, tuple)) else str(value)]
    return command


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    A child outlives a parent killed by ``kill -9`` (no handler of the parent runs), so a killed benchmark would leave
    its workflows training into folders that a resumed benchmark starts again in. SIGTERM ends a workflow the way
    ``kill`` does (its run summary says ``interrupted``; torchrun passes it on to its workers). Linux sends it when
    the *thread* that started the child ends: :func:`run_logged` waits for its child in that thread, so this is when
    the process dies. The function is made here, in the parent, so that the child only calls ``prctl`` (nothing is
    imported or looked up between ``fork`` and ``exec``); if the parent died before the call, the child ends itself.
    ``None`` where there is no ``prctl`` (not Linux): the child is started as before.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent, signum = os.getpid(), int(sig)

    def _set() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: the signal would never come
            os.kill(os.getpid(), signum)

    return _set


def run_logged(
    name: str,
    command: Sequence[str],
    log_file: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    prefix: str = "[run]",
) -> RunResult:
    """Run ``command``, write its output to ``log_file``, show its progress; raise if it fails.

    Args:
        name: what the command is, for messages.
        command: the command line.
        log_file: where all of its output goes (the command line first).
        env: its environment (default: this process's).
        prefix: put before every line printed.

    Raises:
        BundleRunError: a non-zero exit, with the log's last lines and the first line that names an error.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    emit(f"{prefix} {name}: {shlex.join(command)}")
    start = time.perf_counter()
    progress = WorkflowProgress(name, prefix)
    with open(log_file, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            encoding="utf-8",
            errors="replace",  # progress bars print non-ASCII whatever the locale
            env=None if env is None else dict(env),
            preexec_fn=end_with_parent(),  # a kill -9 of this process ends the workflow too
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                progress.feed(line)
                if any(marker in line for marker in ECHOED_MARKERS):
                    emit(f"{prefix}   {line.strip()[-140:]}")
        finally:
            progress.close()
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        lines = log_file.read_text(encoding="utf-8").splitlines()
        causes = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
        raise BundleRunError(
            f"{prefix} {name} failed (exit {process.returncode}) after {seconds:.0f} s; log: {log_file}\n"
            + "\n".join(lines[-12:] + causes[:1])
        )
    last = progress.status.describe()
    emit(f"{prefix}   {name} done in {seconds:.0f} s" + (f" ({last})" if last != "starting" else "") + f"; log: {log_file}")
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # ru_maxrss: KiB on Linux, bytes on macOS
    return RunResult(seconds, usage.ru_maxrss / scale, usage.ru_utime + usage.ru_stime)

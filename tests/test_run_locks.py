"""No workflow left running by a killed parent (issue 35 item 13).

- A workflow started by :func:`semcl_tools.bundle_run.run_logged` (the benchmark's and the demo's) ends when its parent
  is killed with ``kill -9``, so a resumed benchmark never trains beside the killed one's child in one folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------------
# a killed parent's workflow ends with it
# ---------------------------------------------------------------------------------------------------------------------

PARENT = """
import sys
from semcl_tools.bundle_run import run_logged

pid_file, log_file = sys.argv[1:3]
child = "import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(300)"
run_logged("sleeper", [sys.executable, "-c", child, pid_file], log_file, prefix="[test]")
"""


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (ended, not yet reaped by its new parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_workflow_ends_within_seconds_when_its_parent_is_killed_with_sigkill(tmp_path):
    """Before: the child slept on for its 300 s after ``kill -9`` of the process that ran it through run_logged."""
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, pid_file, tmp_path / "child.log"], cwd=REPOSITORY, env=env)
    child = None
    try:
        deadline = time.time() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline and parent.poll() is None:
            time.sleep(0.1)
        assert pid_file.is_file(), "the child never started"
        child = int(pid_file.read_text())
        assert _running(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 5
        while _running(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not _running(child), f"the child {child} still runs 5 s after its parent was killed with SIGKILL"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and _running(child):
            os.kill(child, signal.SIGKILL)


def test_run_logged_still_runs_and_logs_its_command(tmp_path):
    from semcl_tools.bundle_run import run_logged

    result = run_logged("echo", [sys.executable, "-c", "print('hello')"], tmp_path / "echo.log", prefix="[test]")
    assert result.seconds >= 0
    assert (tmp_path / "echo.log").read_text().splitlines()[1] == "hello"

"""Child processes run in their own process group, so killing one kills all it started; and a child can
ask to die with its parent, so that no worker or codec outlives the process that would collect it."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from contextlib import suppress

# Set by the local Batch runner: the worker then gets SIGKILL when the `codeclab run` or `serve` dies.
PARENT_PID_ENV = "CODECLAB_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def stop_process_group(proc: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM the child's group, as `docker stop` does, so it can clean up; SIGKILL what is left after the grace."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_seconds)
    kill_process_group(proc)


def kill_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole group and reap it; a child that already exited is fine."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when `parent` (the thread that started it) ends. A change of uid clears the
    setting, so call it after one. Raises RuntimeError if the parent has already gone."""
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the setting took: nobody is left to collect this process
        raise RuntimeError(f"the parent process {parent} ended before this one started")

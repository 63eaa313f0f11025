"""A command the worker runs through SPAWN_MEASURED (every ffmpeg) dies with the worker, even by SIGKILL: it runs
in a session of its own, which killing the worker's group does not reach, and ffmpeg ignores SIGPIPE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

# A stand-in worker: starts a long command as run_ffmpeg does (its own session), then waits to be killed.
WORKER = """
import os, subprocess, sys, time
from codeclab.worker.processes import measured_command
_, write_fd = os.pipe()
command = ["/bin/sleep", sys.argv[2]]
if sys.argv[1] == "measured":
    command = measured_command(write_fd, command)
subprocess.Popen(command, pass_fds=(write_fd,), start_new_session=True)
time.sleep(120)
"""


def sleeps_for(seconds: str) -> list[int]:
    """Live processes running `/bin/sleep <seconds>` (a value no other process uses)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().split(b"\0")[:2] == [
                b"/bin/sleep",
                seconds.encode(),
            ]:
                found.append(int(proc.name))
        except OSError:
            continue  # gone while we looked
    return found


def wait_for(condition: Callable[[], object], seconds: float) -> bool:
    """Whether `condition` held within `seconds` (a control expects it not to: no assertion here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("how", ["measured", "plain"])
def test_a_command_run_through_spawn_measured_dies_with_its_killed_worker(how: str) -> None:
    seconds = f"{100 + uuid.uuid4().int % 10_000 / 1000:.3f}"  # names this test's sleep among all processes
    worker = subprocess.Popen([sys.executable, "-c", WORKER, how, seconds], cwd=REPO)
    try:
        assert wait_for(lambda: sleeps_for(seconds), 30), "the command never started"
        worker.kill()  # SIGKILL: nothing in the worker runs again
        worker.wait()
        gone = wait_for(lambda: not sleeps_for(seconds), 5)
        if how == "measured":
            assert gone, "the command outlived its worker"
        else:  # control: started the same way without the wrapper, it outlives the worker
            assert not gone
    finally:
        for pid in sleeps_for(seconds):
            os.kill(pid, signal.SIGKILL)

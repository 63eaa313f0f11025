"""Warm local Batch jobs (jobs.WarmWorkers, standby.py): a standby becomes exactly the worker a job would have
started, runs one job only, and never outlives the process that started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from codeclab.local.jobs import WarmWorkers, hand_job
from codeclab.worker.processes import PARENT_PID_ENV


def _ready(warm: WarmWorkers, timeout: float = 60) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + timeout
    while (proc := warm.take()) is None:
        assert time.monotonic() < deadline, "no standby worker became ready"
        time.sleep(0.05)
    return proc


def _gone(pid: int) -> bool:
    """Exited, or a zombie nobody reaped yet (its parent was killed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_standby_runs_its_job_with_the_jobs_environment_output_and_arguments(
    tmp_path: Path, carphone_y4m: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "warm", "source": {"clip": str(carphone_y4m), "frames": 2},
                                "codec": {"name": "x264"}, "metrics": {"vmaf": False}}))  # fmt: skip
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # the fault reaches the worker only through the job's environment: its exit code 4 shows it was applied
    env = {**os.environ, "CODECLAB_FAULT": "fail:encode@1", "TMPDIR": str(scratch), PARENT_PID_ENV: str(os.getpid())}
    warm = WarmWorkers(1).start()
    try:
        first = _ready(warm)
        hand_job(first, {"argv": [str(spec), "--out", str(tmp_path / "out")], "env": env, "log": str(tmp_path / "log")})
        assert first.wait(timeout=120) == 4
        second = _ready(warm)  # taking one started another: a fresh process, never the one that ran a job
        assert second.pid != first.pid
        assert second.stdin is not None
        second.stdin.close()  # no job after all: it exits, having run nothing
        assert second.wait(timeout=30) == 0
    finally:
        warm.close()
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["error"]["type"] == "CODEC_ERROR" and "injected codec failure" in result["error"]["message"]
    assert "injected codec failure in encode" in (tmp_path / "log").read_text()  # its stderr went to the job's log


def test_with_a_limit_no_standby_starts_past_it_and_the_last_one_lives_on() -> None:
    """`codeclab run` of one spec wants one standby, not a second one importing beside its only job. The thread that
    started the standbys stays: were it to end, their parent-death signal would kill them."""
    warm = WarmWorkers(2, limit=1).start()
    try:
        only = _ready(warm)
        time.sleep(1.0)  # time enough for a second one to have been started, were there no limit
        assert warm.take() is None
        assert only.poll() is None, "the standby died when its starting thread had nothing left to start"
        assert only.stdin is not None
        only.stdin.close()
        assert only.wait(timeout=30) == 0
    finally:
        warm.close()


PARENT = """\
import subprocess, sys, time
from codeclab.local.jobs import WarmWorkers
warm = WarmWorkers(1).start()
while (proc := warm.take()) is None:
    time.sleep(0.05)
plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print(proc.pid, plain.pid, flush=True)
time.sleep(120)
"""


def test_an_idle_standby_dies_with_its_orchestrator_on_kill_9() -> None:
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PARENT)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    standby, plain = (int(pid) for pid in parent.stdout.readline().split())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(standby), "the standby outlived its orchestrator"
        # control: a child started the same way without the parent-death signal survives the same kill
        assert not _wait_gone(plain, timeout=1)
    finally:
        for pid in (standby, plain):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)

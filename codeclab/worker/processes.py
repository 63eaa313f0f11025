"""Child processes run in their own process group, so killing one kills all it started; and a child can
ask to die with its parent, so that no worker or codec outlives the process that would collect it.

Peak memory: a process's ru_maxrss counts the memory of whatever process exec'd it (Linux keeps the old
image's high-water mark across exec), and subprocess starts children with vfork from the worker, so a
child's rusage repeats the worker's own peak. `own_peak_rss_mb` reads this process's own high-water mark
(VmHWM, which exec resets), and `SPAWN_MEASURED` starts a command from a fresh, small interpreter that
waits for it and reports its real ru_maxrss, collected by `record_child_peak`. A child that must be the
worker's own (the sandboxed codec: the worker verifies its layers through its pid) is measured from outside
instead, by reading its VmHWM while it lives (`live_peak_rss_kib`)."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path

# Set by the local Batch runner: the worker then gets SIGKILL when the `codeclab run` or `serve` dies.
PARENT_PID_ENV = "CODECLAB_PARENT_PID"
_PR_SET_PDEATHSIG = 1

# python -I -S -c SPAWN_MEASURED FD PARENT COMMAND...: runs COMMAND (signals it must not inherit ignored reset, as
# subprocess does), writes its ru_maxrss in KiB to FD (which COMMAND does not get), and ends as COMMAND ended.
# COMMAND runs in a session of its own, where killing the worker's group does not reach it, and ffmpeg ignores
# SIGPIPE: so the end of PARENT (the worker) reaches this process as SIGTERM, and it kills COMMAND. Without that, a
# worker killed by SIGKILL left its encoder running to the end (a 60-frame x265 veryslow encode: over 20 s).
# The parent-death check is die_with_parent's (prctl 1 = PR_SET_PDEATHSIG), written again because this bare
# interpreter (-I -S) cannot import codeclab.
SPAWN_MEASURED = """
import ctypes, os, signal, sys
fd, parent = int(sys.argv[1]), int(sys.argv[2])
os.set_inheritable(fd, False)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
if ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != parent:
    sys.exit(137)
pid = os.posix_spawn(sys.argv[3], sys.argv[3:], os.environ, setsigmask=(),
                     setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM))
signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(pid, signal.SIGKILL))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
_, status, usage = os.wait4(pid, 0)
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the pid is reaped: it may be another process's now
try:
    os.write(fd, b"%d" % usage.ru_maxrss)
except OSError:
    pass
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""
_MAX_REPORT_BYTES = 32  # a KiB count; anything longer is not one
_children_peak_kib = 0
_children_lock = threading.Lock()


def measured_command(report_fd: int, command: list[str]) -> list[str]:
    """`command` run through SPAWN_MEASURED, its peak written to `report_fd` (pass it in pass_fds); it dies with
    the thread of this process that starts it."""
    return [sys.executable, "-I", "-S", "-c", SPAWN_MEASURED, str(report_fd), str(os.getpid()), *command]


def record_child_peak(report_fd: int) -> None:
    """Read what SPAWN_MEASURED wrote to the pipe `report_fd` (after it exited) and keep the largest; close it."""
    with os.fdopen(report_fd, "rb") as pipe:
        report = pipe.read(_MAX_REPORT_BYTES + 1)
    if not re.fullmatch(rb"[0-9]{1,%d}" % _MAX_REPORT_BYTES, report):
        return  # killed before it could report (a stall, a signal): nothing measured
    keep_child_peak(int(report))


def keep_child_peak(kib: int) -> None:
    """Count a child's peak RSS, in KiB, into children_peak_rss_mb()."""
    global _children_peak_kib
    with _children_lock:
        _children_peak_kib = max(_children_peak_kib, kib)


def live_peak_rss_kib(pid: int) -> int | None:
    """The high-water mark (VmHWM) of a child this process has not reaped yet, in KiB; None once its memory is gone.

    Read from the kernel, so a child cannot misreport it; unreaped, its pid cannot belong to anyone else."""
    try:
        return _vm_hwm_kib(Path(f"/proc/{pid}/status"))
    except OSError:
        return None


def children_peak_rss_mb() -> float:
    """The largest peak RSS of the children measured so far in this process, in MiB (0 if none was)."""
    with _children_lock:
        return _children_peak_kib / 1024


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started (VmHWM), in MiB, without what its parent had when it exec'd."""
    kib = _vm_hwm_kib(Path("/proc/self/status"))
    if kib is None:
        raise RuntimeError("/proc/self/status has no VmHWM line: peak memory cannot be measured on this kernel")
    return kib / 1024


def _vm_hwm_kib(status_path: Path) -> int | None:
    """VmHWM from a /proc status file; None where it has none (a process whose memory is gone)."""
    status = status_path.read_text(encoding="ascii", errors="replace")
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


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

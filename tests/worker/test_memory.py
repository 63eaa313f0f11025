"""Peak memory, measured for real: the worker's own and its ffmpeg children's, not what a process inherits at exec."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from codeclab.worker.processes import measured_command
from tests.conftest import REPO

HELD_MIB = 300  # what the parent holds when it starts a child; far above a small child's own peak

PARENT = f"""
import json, resource, subprocess, sys
import numpy as np
from codeclab.worker.ffmpeg import run_ffmpeg
from codeclab.worker.processes import children_peak_rss_mb
held = np.ones({HELD_MIB} << 20, np.uint8)  # touched: resident
run_ffmpeg(["-v", "error", "-f", "lavfi", "-i", "color=s=64x64:d=0.04", "-f", "null", "-"])
small = children_peak_rss_mb()
own = subprocess.run(
    [sys.executable, "-c", "import resource; from codeclab.worker.processes import own_peak_rss_mb; "
     "print(own_peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
    capture_output=True, text=True, check=True,
).stdout.split()
print(json.dumps({{
    "ffmpeg_measured": small,
    "ffmpeg_rusage_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "grandchild_own": float(own[0]),
    "grandchild_rusage_self": float(own[1]),
}}))
"""


def _parent_holding_memory() -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", PARENT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_an_ffmpeg_childs_peak_is_its_own_not_the_workers() -> None:
    figures = _parent_holding_memory()
    # control: the kernel's rusage of a child started by a large process repeats that process's peak
    assert figures["ffmpeg_rusage_children"] >= HELD_MIB
    # measured through SPAWN_MEASURED: ffmpeg's own few tens of MiB
    assert 1 < figures["ffmpeg_measured"] < HELD_MIB / 3


def test_the_workers_own_peak_leaves_out_what_its_parent_held() -> None:
    figures = _parent_holding_memory()
    assert figures["grandchild_rusage_self"] >= HELD_MIB  # control: ru_maxrss carries the parent's peak over exec
    assert figures["grandchild_own"] < HELD_MIB / 3  # VmHWM: a bare interpreter's own


def _run_measured(command: list[str]) -> tuple[int, str, bytes]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(measured_command(write_fd, command), pass_fds=(write_fd,), stdout=subprocess.PIPE)
    os.close(write_fd)
    out, _ = proc.communicate(timeout=60)
    with os.fdopen(read_fd, "rb") as pipe:
        return proc.returncode, out.decode(), pipe.read()


def test_a_large_child_is_measured_large() -> None:
    code = "import numpy as np; a = np.ones(200 << 20, np.uint8); print(a.sum())"
    returncode, _, report = _run_measured([sys.executable, "-c", code])
    assert returncode == 0 and 200 * 1024 <= int(report) < 400 * 1024  # KiB


def test_the_measured_child_ends_as_the_command_did_with_default_signals() -> None:
    assert _run_measured(["/bin/sh", "-c", "exit 7"])[0] == 7
    # killed by a signal: the same signal, so the worker still tells a file-size limit (SIGXFSZ) from a failure
    assert _run_measured(["/bin/sh", "-c", "kill -XFSZ $$"])[0] == -signal.SIGXFSZ
    # Python ignores SIGPIPE and SIGXFSZ; the command gets them back at their defaults, as subprocess gives them
    _, status, _ = _run_measured(["/bin/sh", "-c", "grep SigIgn /proc/self/status"])
    ignored = int(status.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_the_command_does_not_get_the_report_pipe() -> None:
    _, listing, _ = _run_measured(["/bin/sh", "-c", "ls /proc/self/fd"])
    assert sorted(int(fd) for fd in listing.split()) == [0, 1, 2, 3]  # stdio and ls's own directory handle


# A sandboxed codec holding `held` MiB while it encodes; the children's peak the worker measured, printed.
SANDBOXED = """
import sys
from pathlib import Path
from codeclab.worker.codecs import make_codec
from codeclab.worker.processes import children_peak_rss_mb
from tests.worker.sandbox.support import codec, write_reference
tmp, held = Path(sys.argv[1]), int(sys.argv[2])
encode = (f"import numpy as np\\nheld = np.ones({held} << 20, np.uint8)\\n"
          "return np.concatenate([frames[p].ravel() for p in 'yuv']).tobytes()")
custom = make_codec("custom", {}, code=codec(encode, "return None"))
reference = write_reference(tmp / "ref.y4m")
custom.protect_source([reference, tmp])
custom.encode(reference, tmp / "b.bin", lambda _: None)
print(children_peak_rss_mb())
"""


def _sandboxed_peak_mib(tmp_path: Path, held_mib: int) -> float:
    folder = tmp_path / str(held_mib)
    folder.mkdir()
    proc = subprocess.run([sys.executable, "-c", SANDBOXED, str(folder), str(held_mib)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.split()[-1])


def test_a_sandboxed_codecs_peak_is_read_from_outside_while_it_runs(tmp_path: Path) -> None:
    small, large = _sandboxed_peak_mib(tmp_path, 0), _sandboxed_peak_mib(tmp_path, HELD_MIB)
    # the child cannot go through SPAWN_MEASURED (the worker checks its layers through its own pid): without
    # reading its VmHWM from /proc, the children's peak of a custom codec's encode was 0
    assert 5 < small < HELD_MIB / 2
    assert HELD_MIB <= large < HELD_MIB + small + 100

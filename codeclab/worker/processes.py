"""Child processes run in their own process group, so killing one kills all it started."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress


def kill_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole group and reap it; a child that already exited is fine."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

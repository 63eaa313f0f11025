"""The one ffmpeg binary (shipped by imageio-ffmpeg), run with progress reporting.

Every child is registered so the stall watchdog can kill it; each runs in its own
process group so nothing it spawns outlives it. Each is started through
processes.SPAWN_MEASURED, so that its own peak memory is measured.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from functools import cache
from pathlib import Path
from typing import Any

import imageio_ffmpeg

from codeclab.worker.errors import StorageFailure
from codeclab.worker.processes import kill_process_group, measured_command, record_child_peak
from codeclab.worker.video import FrameCallback

_active: set[subprocess.Popen[bytes]] = set()
_active_lock = threading.Lock()


class FFmpegFailed(RuntimeError):
    """ffmpeg exited non-zero; `stderr` holds its own last words."""

    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        super().__init__(f"ffmpeg exited with {returncode}: {last}")


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


@cache
def ffmpeg_version() -> str:
    return imageio_ffmpeg.get_ffmpeg_version()


@cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries linked into the binary that shape our numbers."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True)
    found = re.findall(r"^(lib\w+)\s+([\d. ]+?)\s+/", out.stdout, flags=re.MULTILINE)
    versions = {lib: re.sub(r"\s+", "", ver) for lib, ver in found}
    versions["ffmpeg"] = ffmpeg_version()
    return versions


def run_ffmpeg(
    args: Sequence[str],
    *,
    on_frame: FrameCallback | None = None,
    stdout_path: Path | None = None,
) -> str:
    """Run ffmpeg with `args`; report each new output frame count; return stderr.

    Raises FFmpegFailed on a non-zero exit. Progress comes over a private pipe so
    that stdout stays free for raw video.
    """
    read_fd, write_fd = os.pipe()
    report_fd, report_write_fd = os.pipe()
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-nostats"]
    cmd += ["-progress", f"pipe:{write_fd}", *args]
    with tempfile.TemporaryFile() as err, _stdout_target(stdout_path) as out:
        try:
            proc = subprocess.Popen(
                measured_command(report_write_fd, cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                pass_fds=(write_fd, report_write_fd), start_new_session=True,
            )  # fmt: skip
        except BaseException:
            os.close(read_fd)
            os.close(report_fd)
            raise
        finally:
            os.close(write_fd)
            os.close(report_write_fd)
        with _active_lock:
            _active.add(proc)
        try:
            _follow_progress(read_fd, on_frame)
            returncode = proc.wait()
        finally:
            with _active_lock:
                _active.discard(proc)
            if proc.poll() is None:
                kill_process_group(proc)
            record_child_peak(report_fd)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if returncode != 0:
        if _storage_refused(returncode, stderr, [Path(tempfile.gettempdir()), stdout_path, Path(args[-1])]):
            raise StorageFailure(
                "ffmpeg could not write its output: the disk is full or a file-size limit (ulimit -f) was hit; "
                f"free space in {tempfile.gettempdir()} and the output folder, then run it again"
            )
        raise FFmpegFailed(returncode, stderr)
    return stderr


_STORAGE_MESSAGES = ("No space left on device", "File too large", "Disk quota exceeded")


def _storage_refused(returncode: int, stderr: str, places: Sequence[Path | None]) -> bool:
    """Whether ffmpeg failed for want of room (its stderr may itself have been lost to a full disk)."""
    if returncode == -signal.SIGXFSZ or any(message in stderr for message in _STORAGE_MESSAGES):
        return True
    for place in places:
        if place is None:
            continue
        with suppress(OSError):
            if os.statvfs(place if place.is_dir() else place.parent).f_bavail == 0:
                return True
    return False


def kill_all() -> None:
    """Kill every running ffmpeg child and its process group (used on a stall)."""
    with _active_lock:
        procs = list(_active)
    for proc in procs:
        kill_process_group(proc)


def _stdout_target(path: Path | None) -> AbstractContextManager[Any]:
    return path.open("wb") if path is not None else nullcontext(subprocess.DEVNULL)


def _follow_progress(read_fd: int, on_frame: FrameCallback | None) -> None:
    last = -1
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            if key == "frame" and value.isdigit() and int(value) != last:
                last = int(value)
                if on_frame:
                    on_frame(last)

"""Progress reporting and the stall watchdog.

Every stage reports frames done; each report that moves forward is a heartbeat.
When no heartbeat comes for `stall_seconds`, the watchdog kills the ffmpeg
children and raises Stalled in the main thread (through SIGUSR1, which also wakes
a blocking sleep or read). If the main thread is stuck inside C code and does not
unwind within a grace period (the stall limit, at most 10 s), the watchdog ends the process with exit code 3
after `on_hard_stall` has had its chance to record why.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from codeclab.worker import ffmpeg
from codeclab.worker.errors import Stalled
from codeclab.worker.faults import Fault

log = logging.getLogger("codeclab.worker")


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    frames_done: int
    frames_total: int


ProgressSink = Callable[[ProgressEvent], None]


class Progress:
    """Tracks the current stage and frame; forwards events to sinks; feeds the watchdog."""

    def __init__(self, frames_total: int, sinks: list[ProgressSink], fault: Fault | None = None) -> None:
        self.frames_total = frames_total
        self._sinks = sinks
        self._fault = fault
        self._stage = ""
        self._done = -1
        self.last_beat = time.monotonic()

    def stage(self, name: str, frames_total: int | None = None) -> Callable[[int], None]:
        """Begin a stage; returns the callback that the stage calls with frames done."""
        if frames_total is not None:
            self.frames_total = frames_total
        self._stage, self._done = name, -1
        self.update(0)
        return self.update

    def update(self, frames_done: int) -> None:
        if frames_done > self._done:
            self._done = frames_done
            self.last_beat = time.monotonic()
            event = ProgressEvent(self._stage, frames_done, self.frames_total)
            for sink in self._sinks:
                sink(event)
        if self._fault:
            self._fault.maybe_fire(self._stage, frames_done)

    @property
    def current_stage(self) -> str:
        return self._stage


class StallWatchdog:
    """Ends the run with STALLED when `progress` has not moved for `stall_seconds`."""

    MAX_GRACE_SECONDS = 10.0

    def __init__(self, progress: Progress, stall_seconds: float, on_hard_stall: Callable[[Stalled], None]) -> None:
        self._progress = progress
        self._stall_seconds = stall_seconds
        self._on_hard_stall = on_hard_stall
        self._stop = threading.Event()
        self._error: Stalled | None = None
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._previous_handler: signal.Handlers | Callable[..., object] | int | None = None

    @property
    def error(self) -> Stalled | None:
        """The stall, once the watchdog has fired."""
        return self._error

    def __enter__(self) -> StallWatchdog:
        self._previous_handler = signal.signal(signal.SIGUSR1, self._raise_in_main)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        signal.signal(signal.SIGUSR1, self._previous_handler)

    def _raise_in_main(self, _signum: int, _frame: FrameType | None) -> None:
        if self._error is not None:
            raise self._error

    def _watch(self) -> None:
        poll = min(1.0, self._stall_seconds / 4)
        while not self._stop.wait(poll):
            idle = time.monotonic() - self._progress.last_beat
            if idle >= self._stall_seconds:
                self._fire(idle)
                return

    def _fire(self, idle: float) -> None:
        stage = self._progress.current_stage or "start-up"
        self._error = Stalled(
            f"no progress for {idle:.0f} s in stage {stage!r} (stall limit {self._stall_seconds} s); "
            "the job was stopped. Raise limits.stall_seconds if this stage is legitimately slow."
        )
        log.error("stall watchdog: %s", self._error)
        ffmpeg.kill_all()
        os.kill(os.getpid(), signal.SIGUSR1)
        if not self._stop.wait(min(self.MAX_GRACE_SECONDS, self._stall_seconds)):
            self._on_hard_stall(self._error)
            os._exit(self._error.exit_code)

"""Deliberate faults for reliability tests, switched on by the CODECLAB_FAULT variable.

Format: KIND:STAGE[@FRAME][:SECONDS], for example
  hang:encode@3      stop making progress once encode reaches frame 3
  freeze:encode@3    the same, but deaf to signals, as a hang inside C code is
  slow:encode:0.5    sleep 0.5 s at every progress report of the encode stage
  crash:decode@1     raise an unexpected exception (an internal error, exit 5)
  fail:decode@1      fail as a broken codec does (CODEC_ERROR, exit 4)
  kill:encode@2      SIGKILL the worker itself, as the out-of-memory killer would
Unset in normal runs; an unparsable value is refused rather than ignored.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

from codeclab.worker.errors import CodecFailure

FAULT_ENV = "CODECLAB_FAULT"
_PATTERN = re.compile(r"^(hang|freeze|slow|crash|fail|kill):(\w+)(?:@(\d+))?(?::([\d.]+))?$")


class InjectedCrash(RuntimeError):
    """The exception a `crash` fault raises."""


@dataclass(frozen=True)
class Fault:
    kind: str
    stage: str
    frame: int = 0
    seconds: float = 0.0

    def maybe_fire(self, stage: str, frames_done: int) -> None:
        if stage != self.stage or frames_done < self.frame:
            return
        if self.kind == "slow":
            time.sleep(self.seconds)
        elif self.kind in {"hang", "freeze"}:
            if self.kind == "freeze":
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            while True:  # woken only by the stall watchdog's signal, unless frozen
                time.sleep(3600)
        elif self.kind == "crash":
            raise InjectedCrash(f"injected crash in {stage} at frame {frames_done}")
        elif self.kind == "fail":
            raise CodecFailure(f"injected codec failure in {stage} at frame {frames_done}")
        elif self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


def fault_from_env() -> Fault | None:
    value = os.environ.get(FAULT_ENV, "").strip()
    if not value:
        return None
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"{FAULT_ENV}={value!r} is not KIND:STAGE[@FRAME][:SECONDS]")
    kind, stage, frame, seconds = match.groups()
    return Fault(kind, stage, int(frame or 0), float(seconds or 0))

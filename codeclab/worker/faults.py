"""Deliberate faults for reliability tests, switched on by the CODECLAB_FAULT variable.

Format: KIND:STAGE[@FRAME][:SECONDS], for example
  hang:encode@3      stop making progress once encode reaches frame 3
  freeze:encode@3    the same, but deaf to signals, as a hang inside C code is
  slow:encode:0.5    sleep 0.5 s at every progress report of the encode stage
  crash:decode@1     raise an unexpected exception (an internal error, exit 5)
  fail:decode@1      fail as a broken codec does (CODEC_ERROR, exit 4)
  kill:encode@2      SIGKILL the worker itself, as the out-of-memory killer would
Unset in normal runs; an unparsable value is refused rather than ignored. In local mode the emulator's
fault plan (codeclab/local/faults.py) decides what this variable holds in each job.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

from codeclab.worker.errors import CodecFailure

FAULT_ENV = "CODECLAB_FAULT"
SYNTAX = "KIND:STAGE[@FRAME][:SECONDS] (KIND: hang, freeze, slow, crash, fail or kill; e.g. slow:encode:0.5)"
_PATTERN = re.compile(r"^(hang|freeze|slow|crash|fail|kill):(\w+)(?:@(\d+))?(?::(\d+\.?\d*|\.\d+))?$")


class InjectedCrash(RuntimeError):
    """The exception a `crash` fault raises."""


@dataclass(frozen=True)
class Fault:
    kind: str
    stage: str
    frame: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        """The CODECLAB_FAULT text that parses back to this fault."""
        frame = f"@{self.frame}" if self.frame else ""
        seconds = ":" + f"{self.seconds:f}".rstrip("0").rstrip(".") if self.seconds else ""
        return f"{self.kind}:{self.stage}{frame}{seconds}"

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
    return parse_fault(value) if value else None


def parse_fault(value: str) -> Fault:
    """A fault from its CODECLAB_FAULT text; a ValueError names the variable and the syntax."""
    match = _PATTERN.match(value.strip())
    if not match:
        raise ValueError(f"{FAULT_ENV}={value!r} is not {SYNTAX}")
    kind, stage, frame, seconds = match.groups()
    return Fault(kind, stage, int(frame or 0), float(seconds or 0))

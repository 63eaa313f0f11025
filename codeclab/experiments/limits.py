"""Time limits of one experiment, shared by CreateRecord and the stack: the only formulas."""

from __future__ import annotations

# The GPU job's retry strategy: attempts when a host or Spot instance is lost.
JOB_ATTEMPTS = 3
# Batch refuses attempt durations under 60 s.
MIN_JOB_SECONDS = 60
# Image pull, scheduling and the worker's start-up beyond the job's own limit.
RUN_MARGIN_SECONDS = 600


def job_timeout(spec_seconds: int, cap_seconds: int, floor_seconds: int = MIN_JOB_SECONDS) -> int:
    """Batch's attempt duration: the spec's limit, capped by the stack, at least Batch's minimum."""
    return max(floor_seconds, min(spec_seconds, cap_seconds))


def run_codec_timeout(job_seconds: int, runnable_seconds: int) -> int:
    """RunCodec's state timeout: every attempt, plus the wait for capacity, plus a margin.

    It must outlast Batch's own limits, so that a job cut by its attempt duration or
    cancelled for lack of capacity ends with that precise reason rather than a state timeout.
    """
    return JOB_ATTEMPTS * job_seconds + runnable_seconds + RUN_MARGIN_SECONDS

"""Limits of one experiment, shared by the API, CreateRecord, the worker and the stack: the only formulas and caps.

The time limits of a job, and the operator's caps on what a spec's limits.codec may ask of a sandboxed codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True)
class CodecCap:
    """The operator's cap on one of a spec's limits.codec values: what sets it and what it is without a setting."""

    field: str  # under limits.codec
    env: str  # the variable the stack gives the worker's job and the functions that check a spec
    setting: str  # cdk.json's context key, from which the stack sets `env`
    default: int  # without `env`


GIB = 1 << 30
CODEC_CAPS = {
    cap.field: cap
    for cap in (
        CodecCap("wall_seconds", "CODECLAB_CODEC_MAX_WALL_SECONDS", "codecMaxWallSeconds", 6 * 3600),
        CodecCap("cpu_seconds", "CODECLAB_CODEC_MAX_CPU_SECONDS", "codecMaxCpuSeconds", 6 * 3600),
        CodecCap("memory_bytes", "CODECLAB_CODEC_MAX_MEMORY_BYTES", "codecMaxMemoryGib", 64 * GIB),  # setting in GiB
    )
}
CodecCaps = dict[str, int]  # limits.codec's field -> its cap
# The stack's output that publishes the caps (a JSON object of CodecCap.env -> value), for `codeclab submit --stack`.
CODEC_CAPS_OUTPUT = "CodecCaps"


def codec_caps(environ: Mapping[str, str]) -> CodecCaps:
    """The caps `environ` sets, each cap's default where it sets none; a value that is not a whole number is the
    operator's to fix (ValueError)."""
    caps = {}
    for cap in CODEC_CAPS.values():
        text = environ.get(cap.env, "")
        if text and not text.isdigit():
            raise ValueError(f"{cap.env}={text!r} is not a whole number; the operator must fix {cap.setting}")
        caps[cap.field] = int(text) if text else cap.default
    return caps


def over_codec_caps(asked: Mapping[str, object], caps: CodecCaps) -> list[tuple[str, str]]:
    """(path, message) for each of a spec's limits.codec values that is over its cap, in CODEC_CAPS' order."""
    return [
        (
            f"$.limits.codec.{cap.field}",
            f"{value} is over this deployment's cap of {caps[cap.field]}; ask for at most {caps[cap.field]}, or have "
            f"the operator raise {cap.setting} in cdk.json's context (the stack's {cap.env})",
        )
        for cap in CODEC_CAPS.values()
        if isinstance(value := asked.get(cap.field), int) and value > caps[cap.field]
    ]

"""Typed deployment settings, read from CDK context (defaults in cdk.json, overrides with `cdk -c key=value`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from constructs import Node

from codeclab.experiments.limits import CODEC_CAPS, GIB

# The worker's job takes 4 vCPUs, so the compute environment must allow at least one job.
JOB_VCPUS = 4
# Batch applies jobStateTimeLimitActions after 10 minutes at the earliest and 24 hours at the latest.
RUNNABLE_TIMEOUT_RANGE = (600, 86400)
# Batch's attemptDurationSeconds starts at 60 s; the spec schema allows up to 24 hours.
TIMEOUT_RANGE = (60, 86400)
CODEC_SECONDS_RANGE = (60, 86400)  # a cap on one encode or decode of a sandboxed codec


class SettingsError(ValueError):
    """A context value that cannot be used; names the key and what was expected."""


@dataclass(frozen=True)
class Settings:
    max_vcpus: int
    use_spot: bool
    runnable_timeout_seconds: int
    max_timeout_seconds: int
    powertools_layer_version: int
    notify_on_success: bool
    alert_email: str | None
    table_name: str | None
    # caps on a spec's limits.codec (the sandboxed codec child's wall clock, CPU time, memory)
    codec_max_wall_seconds: int
    codec_max_cpu_seconds: int
    codec_max_memory_gib: int

    @classmethod
    def from_node(cls, node: Node) -> Settings:
        return cls(
            max_vcpus=_int(node, "maxVcpus", (JOB_VCPUS, 10000)),
            use_spot=_bool(node, "useSpot"),
            runnable_timeout_seconds=_int(node, "runnableTimeoutSeconds", RUNNABLE_TIMEOUT_RANGE),
            max_timeout_seconds=_int(node, "maxTimeoutSeconds", TIMEOUT_RANGE),
            powertools_layer_version=_int(node, "powertoolsLayerVersion", (1, 10000)),
            notify_on_success=_bool(node, "notifyOnSuccess"),
            alert_email=_optional_str(node, "alertEmail"),
            table_name=_optional_str(node, "tableName"),
            codec_max_wall_seconds=_int(node, CODEC_CAPS["wall_seconds"].setting, CODEC_SECONDS_RANGE),
            codec_max_cpu_seconds=_int(node, CODEC_CAPS["cpu_seconds"].setting, CODEC_SECONDS_RANGE),
            codec_max_memory_gib=_int(node, CODEC_CAPS["memory_bytes"].setting, (1, 1024)),
        )

    @property
    def codec_cap_environment(self) -> dict[str, str]:
        """The caps on a spec's limits.codec as the worker's job and the functions that check a spec read them
        (codeclab.experiments.limits.codec_caps): one set of values for all of them."""
        caps = {
            "wall_seconds": self.codec_max_wall_seconds,
            "cpu_seconds": self.codec_max_cpu_seconds,
            "memory_bytes": self.codec_max_memory_gib * GIB,
        }
        return {CODEC_CAPS[field].env: str(value) for field, value in caps.items()}


def _value(node: Node, key: str) -> Any:
    value = node.try_get_context(key)
    if value is None:
        raise SettingsError(f"context value {key!r} is missing; cdk.json sets the defaults")
    return value


def _int(node: Node, key: str, bounds: tuple[int, int]) -> int:
    raw = _value(node, key)
    # `cdk -c key=16` passes strings; cdk.json passes numbers. Booleans are not numbers here.
    if isinstance(raw, bool) or not str(raw).strip().isdigit():
        raise SettingsError(f"context value {key!r} must be a whole number, not {raw!r}")
    value = int(raw)
    low, high = bounds
    if not low <= value <= high:
        raise SettingsError(f"context value {key!r} must be between {low} and {high}, not {value}")
    return value


def _bool(node: Node, key: str) -> bool:
    raw = _value(node, key)
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in {"true", "false"}:
        return str(raw).lower() == "true"
    raise SettingsError(f"context value {key!r} must be true or false, not {raw!r}")


def _optional_str(node: Node, key: str) -> str | None:
    raw = node.try_get_context(key)
    return str(raw) if raw else None

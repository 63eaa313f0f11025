"""Pinned test conditions: what must be equal for two rate-distortion numbers to be comparable.

Across every point of a report: the source (clip, file hash, frame range, crop, size,
scaling, frame rate, pixel format, colour handling), the definitions of the metrics, the
definition of the rate, and the ffmpeg, codeclab, numpy and OpenCV that measured them. Within one curve
only: the codec's implementation and its own colour conversion, because a codec that
converts to RGB internally is part of that codec, not of the test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SOURCE_FIELDS = (
    "clip", "sha256", "start", "frames", "crop", "size", "scaling", "fps", "pix_fmt", "colour_handling",
)  # fmt: skip
METRIC_FIELDS = ("psnr", "psnr_yuv", "ssim", "ms_ssim")
VMAF_FIELDS = ("vmaf", "vmaf_version")  # pinned only when VMAF is the metric compared
CODEC_FIELDS = ("implementation", "colour_conversion")
STAMP = "CONDITIONS DIFFER"


@dataclass(frozen=True)
class Difference:
    """One condition that is not the same everywhere: each value with the experiments that have it."""

    field: str
    values: tuple[tuple[str, tuple[str, ...]], ...]
    curve: str | None = None  # set for a codec condition, which must agree only within this curve

    def __str__(self) -> str:
        where = f"{self.field} within curve '{self.curve}'" if self.curve else self.field
        return f"{where}: " + " vs ".join(f"{value} ({', '.join(ids)})" for value, ids in self.values)


def pinned_conditions(result: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """The conditions every point of a report must share, by dotted field name, from one result.json."""
    conditions = result.get("conditions") or {}
    source, metrics = conditions.get("source") or {}, conditions.get("metrics") or {}
    environment = result.get("environment") or {}
    packages = environment.get("packages") or {}
    metric_fields = METRIC_FIELDS + (VMAF_FIELDS if metric == "vmaf" else ())
    return {
        **{f"source.{name}": source.get(name) for name in SOURCE_FIELDS},
        **{f"metrics.{name}": metrics.get(name) for name in metric_fields},
        "rate": conditions.get("rate"),
        "environment.ffmpeg": (environment.get("ffmpeg") or {}).get("ffmpeg"),
        # the metric implementations: codeclab's own code, on numpy and OpenCV's filters
        "environment.codeclab": environment.get("codeclab"),
        "environment.numpy": packages.get("numpy"),
        "environment.opencv": packages.get("opencv-python-headless"),
    }


def codec_conditions(result: Mapping[str, Any]) -> dict[str, Any]:
    """The conditions the points of one curve must share: how its codec was built and what it converts."""
    codec = (result.get("conditions") or {}).get("codec") or {}
    return {f"codec.{name}": codec.get(name) for name in CODEC_FIELDS}


def condition_differences(
    results: Mapping[str, Mapping[str, Any]], metric: str, curve_of: Mapping[str, str]
) -> list[Difference]:
    """Every pinned field that differs across `results` (by experiment id), then every codec field within a curve."""
    differences = differing_fields({eid: pinned_conditions(r, metric) for eid, r in results.items()})
    for curve in dict.fromkeys(curve_of.values()):
        members = {eid: codec_conditions(r) for eid, r in results.items() if curve_of[eid] == curve}
        differences += differing_fields(members, curve)
    return differences


def differing_fields(conditions: Mapping[str, Mapping[str, Any]], curve: str | None = None) -> list[Difference]:
    """The fields whose values are not all equal, each value listed with its ids in first-seen order."""
    fields = dict.fromkeys(field for values in conditions.values() for field in values)
    differences = []
    for field in fields:
        holders: dict[str, list[str]] = {}  # canonical JSON of a value -> the ids that have it
        for experiment_id, values in conditions.items():
            holders.setdefault(json.dumps(values.get(field), sort_keys=True), []).append(experiment_id)
        if len(holders) > 1:
            found = tuple((shown(json.loads(v)), tuple(ids)) for v, ids in holders.items())
            differences.append(Difference(field, found, curve))
    return differences


def shared_conditions(conditions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The fields on which all of `conditions` agree, with their common value."""
    first, *rest = conditions
    return {field: value for field, value in first.items() if all(c.get(field) == value for c in rest)}


def mismatch_stamp(differences: Sequence[Difference]) -> str:
    return f"{STAMP}: " + "; ".join(map(str, differences))


def shown(value: Any) -> str:
    """A condition's value as a person reads it: strings bare, anything else as JSON (so 176x144 is [176, 144])."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

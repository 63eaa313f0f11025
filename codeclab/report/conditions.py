"""Pinned test conditions: what must be equal for two rate-distortion numbers to be comparable.

Each condition has a scope. Across every point of a report measured at one bit depth: the
definitions of the metrics (VMAF's among the points that measured it), the definition of the
rate (both name the bit depth), and the ffmpeg, codeclab, numpy and OpenCV that measured them.
Within one sequence: the source (clip, file hash, frame range, crop, size, scaling, frame rate,
pixel format and bit depth, colour handling, class), because each sequence of a test set is its
own clip. Within one curve,
across sequences: the codec's implementation and its own colour conversion, because a codec
that converts to RGB internally is part of that codec, not of the test, and a codec package's
name, version and hashes (versions.py gives each version a curve of its own).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codeclab.experiments.result import Result

SOURCE_FIELDS = (
    "clip", "sha256", "start", "frames", "crop", "size", "scaling", "fps", "pix_fmt", "bit_depth", "colour_handling",
    "class",
)  # fmt: skip
METRIC_FIELDS = ("psnr", "psnr_yuv", "ssim", "ms_ssim")
VMAF_FIELDS = ("vmaf", "vmaf_version")  # pinned among the points that measured VMAF
CODEC_FIELDS = ("implementation", "colour_conversion", "package")  # package: name, version, tree and weights hashes
STAMP = "CONDITIONS DIFFER"


@dataclass(frozen=True)
class Difference:
    """One condition that is not the same everywhere: each value with the experiments that have it."""

    field: str
    values: tuple[tuple[str, tuple[str, ...]], ...]
    scope: str | None = None  # e.g. "curve 'jpeg'" or "sequence 'carphone'"; None: across the whole report

    def __str__(self) -> str:
        where = f"{self.field} within {self.scope}" if self.scope else self.field
        return f"{where}: " + " vs ".join(f"{value} ({', '.join(ids)})" for value, ids in self.values)


def report_conditions(result: Result) -> dict[str, Any]:
    """The conditions every point of a report must share, by dotted field name."""
    conditions = result["conditions"]
    environment: Mapping[str, Any] = result.get("environment") or {}  # absent from results written before it
    metrics: Mapping[str, str] = conditions.get("metrics") or {}
    packages: Mapping[str, str | None] = environment.get("packages") or {}
    return {
        **{f"metrics.{name}": metrics.get(name) for name in METRIC_FIELDS},
        "rate": conditions.get("rate"),
        "environment.ffmpeg": (environment.get("ffmpeg") or {}).get("ffmpeg"),
        # the metric implementations: codeclab's own code, on numpy and OpenCV's filters
        "environment.codeclab": environment.get("codeclab"),
        "environment.numpy": packages.get("numpy"),
        "environment.opencv": packages.get("opencv-python-headless"),
    }


def vmaf_conditions(result: Result) -> dict[str, Any]:
    metrics: Mapping[str, str] = result["conditions"].get("metrics") or {}
    return {f"metrics.{name}": metrics.get(name) for name in VMAF_FIELDS}


def sequence_conditions(result: Result) -> dict[str, Any]:
    """The conditions the points of one sequence must share: which frames of which clip, and how they were made."""
    source: Mapping[str, object] = result["conditions"].get("source") or {}
    return {f"source.{name}": source.get(name) for name in SOURCE_FIELDS}


def codec_conditions(result: Result) -> dict[str, Any]:
    """The conditions the points of one curve must share: how its codec was built and what it converts."""
    codec: Mapping[str, Any] = result["conditions"].get("codec") or {}
    return {f"codec.{name}": codec.get(name) for name in CODEC_FIELDS}


def all_conditions(result: Result) -> dict[str, Any]:
    """Every condition of one point, whatever its scope: what two measurements of the same point must share."""
    return {
        **report_conditions(result),
        **vmaf_conditions(result),
        **sequence_conditions(result),
        **codec_conditions(result),
    }


def bit_depth(result: Result) -> int:
    """The bit depth a point was measured at; results written before 10-bit support were all 8-bit."""
    return result["conditions"]["source"].get("bit_depth", 8)


def measured_vmaf(result: Result) -> bool:
    return result["metrics"].get("vmaf") is not None


def condition_differences(
    results: Mapping[str, Result], sequence_of: Mapping[str, str], curve_of: Mapping[str, str]
) -> list[Difference]:
    """Every field that differs within its scope, over `results` by experiment id."""
    differences: list[Difference] = []
    depths = {eid: bit_depth(r) for eid, r in results.items()}
    for depth in dict.fromkeys(depths.values()):
        # The metrics' and the rate's definitions name the bit depth: 8- and 10-bit sequences share a report.
        within = f"{depth}-bit sequences" if len(set(depths.values())) > 1 else None
        same_depth = {eid: r for eid, r in results.items() if depths[eid] == depth}
        differences += differing_fields({eid: report_conditions(r) for eid, r in same_depth.items()}, within)
        measured = {eid: vmaf_conditions(r) for eid, r in same_depth.items() if measured_vmaf(r)}
        differences += differing_fields(measured, within)
    for scope, group_of, conditions_of in (
        ("sequence", sequence_of, sequence_conditions),
        ("curve", curve_of, codec_conditions),
    ):
        for group in dict.fromkeys(group_of.values()):
            members = {eid: conditions_of(r) for eid, r in results.items() if group_of[eid] == group}
            differences += differing_fields(members, f"{scope} '{group}'")
    return differences


def differing_fields(conditions: Mapping[str, Mapping[str, Any]], scope: str | None = None) -> list[Difference]:
    """The fields whose values are not all equal, each value listed with its ids in first-seen order."""
    fields = dict.fromkeys(field for values in conditions.values() for field in values)
    differences = []
    for field in fields:
        holders: dict[str, list[str]] = {}  # canonical JSON of a value -> the ids that have it
        for experiment_id, values in conditions.items():
            holders.setdefault(json.dumps(values.get(field), sort_keys=True), []).append(experiment_id)
        if len(holders) > 1:
            found = tuple((shown(json.loads(v)), tuple(ids)) for v, ids in holders.items())
            differences.append(Difference(field, found, scope))
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

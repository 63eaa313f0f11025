"""The same rate point measured more than once, e.g. by two sweeps that share a CRF.

A point is a sequence, a curve and the rate knob's setting. Two measurements of it that agree
in every number and every condition are one point: the report keeps the first and lists the
other as a duplicate. Two that disagree cannot both be on the curve, so the report refuses
them, naming both experiments and what differs. Speed is not compared: it varies run to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codeclab.report.conditions import Difference, all_conditions, differing_fields
from codeclab.report.curves import Point
from codeclab.report.runs import ReportError

# result.json's figures that a rerun of the same point must reproduce exactly (the codecs pin their threads)
RD_NUMBERS = (
    "bpp", "kbps", "compression_ratio", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "ssim", "ms_ssim", "vmaf",
)  # fmt: skip


@dataclass(frozen=True)
class Duplicate:
    experiment_id: str
    same_as: str  # the experiment the report kept for this point


class ConflictingPoints(ReportError):
    """Two experiments measured the same point and got different numbers or conditions."""

    def __init__(self, first: Point, second: Point, differences: Sequence[Difference]) -> None:
        lines = "\n".join(f"  {d}" for d in differences)
        super().__init__(
            f"{first.experiment_id} and {second.experiment_id} measured the same point ({_describe(first)}) "
            f"differently:\n{lines}\nleave one of them (or its sweep) out of the ids"
        )


def deduplicate(points: Sequence[Point]) -> tuple[list[Point], list[Duplicate]]:
    """The points, each measured once; raises ConflictingPoints for two measurements that disagree."""
    kept: dict[tuple[str, str, str], Point] = {}
    duplicates = []
    for point in points:
        key = (point.sequence.name, point.curve, point.rate_params)
        first = kept.setdefault(key, point)
        if first is point:
            continue
        differences = differing_fields({p.experiment_id: _measured(p) for p in (first, point)})
        if differences:
            raise ConflictingPoints(first, point, differences)
        duplicates.append(Duplicate(point.experiment_id, first.experiment_id))
    return list(kept.values()), duplicates


def _measured(point: Point) -> dict[str, Any]:
    figures = {f"metrics.{name}": point.metrics.get(name) for name in RD_NUMBERS}
    return {**figures, "bitstream.bytes": point.result["bitstream"]["bytes"], **all_conditions(point.result)}


def _describe(point: Point) -> str:
    return f"sequence {point.sequence.name}, curve '{point.curve}', {point.rate_params or 'no rate knob'}"

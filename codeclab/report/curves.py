"""Rate-distortion curves: successful experiments grouped by codec settings, one point per rate.

A curve is a codec with all its settings but the rate knob, labelled like
`x264 keyint=1 preset=medium`; its points are sorted by bits per pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from codeclab.experiments.result import Result
from codeclab.report.bd import Curve
from codeclab.report.runs import Experiment, ReportError

RATE_KNOBS = ("crf", "qp", "quality")
# Threads change how fast a point is coded, not its curve; `codeclab list` leaves them out too.
NOT_IN_LABEL = frozenset({*RATE_KNOBS, "threads"})


@dataclass(frozen=True)
class Metric:
    key: str  # the name in result.json's metrics
    name: str
    unit: str
    digits: int  # decimals worth showing for a value; a delta gets one more

    @property
    def heading(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


METRICS = {
    metric.key: metric
    for metric in (
        Metric("psnr_yuv", "PSNR-YUV", "dB", 2),
        Metric("ms_ssim", "MS-SSIM", "", 4),
        Metric("vmaf", "VMAF", "", 2),
    )
}


@dataclass(frozen=True)
class Point:
    experiment: Experiment
    curve: str
    codec: str
    rate_params: str  # the rate knob's setting, e.g. "crf=23"

    @property
    def experiment_id(self) -> str:
        return self.experiment.experiment_id

    @property
    def result(self) -> Result:
        """Only experiments that succeeded become points, and each of those has its result (runs.py checks)."""
        if self.experiment.result is None:
            raise ReportError(f"{self.experiment_id} has no result.json to plot")
        return self.experiment.result

    @property
    def metrics(self) -> Mapping[str, float | None]:
        return cast(Mapping[str, float | None], self.result["metrics"])  # looked up by the metric's name

    @property
    def bpp(self) -> float:
        return self.result["metrics"]["bpp"]

    def quality(self, metric: str) -> float:
        value = self.metrics.get(metric)
        if value is None:  # make_point refuses such points, so only a metric asked for later lands here
            raise ReportError(f"{self.experiment_id} has no {metric} in its result.json")
        return float(value)


@dataclass(frozen=True)
class RDCurve:
    label: str
    codec: str
    points: tuple[Point, ...]  # by rate

    def bd_curve(self, metric: str) -> Curve:
        return Curve(self.label, [p.bpp for p in self.points], [p.quality(metric) for p in self.points])

    def includes(self, experiment_id: str) -> bool:
        """Whether the id names one of its points, or a sweep that gave it a point."""
        return any(experiment_id in (p.experiment_id, p.experiment.requested_as) for p in self.points)


def codec_of(experiment: Experiment) -> Mapping[str, Any]:
    spec = experiment.result["spec"] if experiment.result else experiment.spec
    return spec["codec"] if spec else {}


def curve_label(codec: Mapping[str, Any]) -> str:
    params = codec.get("params") or {}
    settings = [f"{name}={params[name]}" for name in sorted(params) if name not in NOT_IN_LABEL]
    return " ".join([codec.get("name", "?"), *settings])


def rate_params(codec: Mapping[str, Any]) -> str:
    params = codec.get("params") or {}
    return " ".join(f"{name}={params[name]}" for name in RATE_KNOBS if name in params)


def make_point(experiment: Experiment, metric: str) -> Point:
    """A successful experiment as a curve point; refuses one that lacks the rate or the metric."""
    codec = codec_of(experiment)
    point = Point(experiment, curve_label(codec), codec.get("name", "?"), rate_params(codec))
    for needed in ("bpp", metric):
        if point.metrics.get(needed) is None:
            hint = " (it ran with metrics.vmaf off); choose --metric psnr_yuv or ms_ssim" if needed == "vmaf" else ""
            raise ReportError(f"{experiment.experiment_id} has no {needed} in its result.json{hint}")
    return point


def group_curves(points: Sequence[Point]) -> list[RDCurve]:
    """One curve per label, in the order the labels first appear."""
    by_label: dict[str, list[Point]] = {}
    for point in points:
        by_label.setdefault(point.curve, []).append(point)
    return [
        RDCurve(label, members[0].codec, tuple(sorted(members, key=lambda p: p.bpp)))
        for label, members in by_label.items()
    ]


def choose_anchor(curves: Sequence[RDCurve], anchor: str | None, first_id: str) -> RDCurve:
    """The curve --anchor names (a label, an experiment or sweep id, or a codec); by default the first id's."""
    if anchor is None:
        return _first_curve_of(curves, first_id)
    matches = (
        [c for c in curves if c.label == anchor]
        or [c for c in curves if c.includes(anchor)]
        or [c for c in curves if c.codec == anchor]
    )
    if len(matches) == 1:
        return matches[0]
    labels = ", ".join(f"'{c.label}'" for c in matches or curves)
    if not matches:
        raise ReportError(
            f"--anchor {anchor} names none of the curves ({labels}); give an experiment or sweep id, a codec name, "
            "or a curve's label"
        )
    raise ReportError(
        f"--anchor {anchor} matches {len(matches)} curves: {labels}; give one of their experiment ids "
        f"or the full label, e.g. --anchor '{matches[0].label}'"
    )


def _first_curve_of(curves: Sequence[RDCurve], first_id: str) -> RDCurve:
    for curve in curves:
        if curve.includes(first_id):
            return curve
    raise ReportError(f"{first_id} has no SUCCEEDED point to anchor on; choose another curve with --anchor")

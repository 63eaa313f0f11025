"""Rate-distortion curves: successful experiments grouped by sequence and codec settings, one point per rate.

A curve is a codec with all its settings but the rate knob, labelled like
`x264 keyint=1 preset=medium`, on one sequence; its points are sorted by bits per pixel.
Curves are never merged across sequences: the same label on two sequences is two curves.
A codec package's curve is named by its package and version (`blockdct 0.1`), never
`package`: two versions are two curves (see versions.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from codeclab.experiments.codec_package import PACKAGE_CODEC
from codeclab.experiments.result import PackageConditions, Result
from codeclab.report.bd import BDError, Curve
from codeclab.report.runs import Experiment, ReportError
from codeclab.report.sequences import SequenceId, sequence_of

RATE_KNOBS = ("crf", "qp", "quality")
PACKAGE_IDENTITY = ("name", "version", "tree_sha256")  # strings a package's result must record, with weights
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
        Metric("psnr_y", "PSNR-Y", "dB", 2),
        Metric("psnr_yuv", "PSNR-YUV", "dB", 2),
        Metric("ms_ssim", "MS-SSIM", "", 4),
        Metric("ssim", "SSIM", "", 4),
        Metric("vmaf", "VMAF", "", 2),
    )
}


@dataclass(frozen=True)
class Point:
    experiment: Experiment
    sequence: SequenceId
    curve: str
    codec: str
    rate_params: str  # the rate knob's setting, e.g. "crf=23"
    package: PackageConditions | None  # the codec package that measured it; None for any other codec

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
        if value is None:
            raise BDError(f"{self.experiment_id} has no {metric} in its result.json")
        return float(value)

    def named_by(self, experiment_id: str) -> bool:
        """Whether the id is this point's, or its sweep's."""
        return experiment_id in (self.experiment_id, self.experiment.requested_as)


@dataclass(frozen=True)
class RDCurve:
    label: str
    codec: str
    sequence: SequenceId
    points: tuple[Point, ...]  # by rate

    def bd_curve(self, metric: str) -> Curve:
        """The curve in `metric`; a point that did not measure it makes the figure n/a (BDError)."""
        return Curve(self.label, [p.bpp for p in self.points], [p.quality(metric) for p in self.points])


def codec_of(experiment: Experiment) -> Mapping[str, Any]:
    spec = experiment.result["spec"] if experiment.result else experiment.spec
    return spec["codec"] if spec else {}


def curve_label(codec: Mapping[str, Any], package: PackageConditions | None = None, tree_digits: int = 0) -> str:
    """The codec, or the package and its version (with `tree_digits` of its tree hash, e.g. `blockdct 0.1@3f2a9c1e`),
    then its settings."""
    params = codec.get("params") or {}
    knobs = _rate_knobs(package)
    settings = [f"{name}={params[name]}" for name in sorted(params) if name not in NOT_IN_LABEL | set(knobs)]
    return " ".join([_package_name(package, tree_digits) if package else codec.get("name", "?"), *settings])


def _rate_knobs(package: PackageConditions | None) -> tuple[str, ...]:
    """The params that move a point along its curve: the built-in codecs' knobs, and a package's rate_param."""
    declared = package.get("rate_param") if package else None
    return (*RATE_KNOBS, declared) if declared and declared not in RATE_KNOBS else RATE_KNOBS


def _package_name(package: PackageConditions, tree_digits: int = 0) -> str:
    name = f"{package['name']} {package['version']}"
    return f"{name}@{package['tree_sha256'][:tree_digits]}" if tree_digits else name


def package_of(experiment: Experiment) -> PackageConditions | None:
    """The codec package a successful experiment ran, as its result records it; None for any other codec."""
    if codec_of(experiment).get("name") != PACKAGE_CODEC:
        return None
    recorded = experiment.result["conditions"]["codec"].get("package") if experiment.result else None
    if not (
        isinstance(recorded, dict)
        and all(isinstance(recorded.get(k), str) for k in PACKAGE_IDENTITY)
        and isinstance(recorded.get("weights"), dict)
    ):
        raise ReportError(
            f"{experiment.experiment_id} ran a codec package, but its result.json does not record which one "
            f"(conditions.codec.package needs {', '.join(PACKAGE_IDENTITY)} and weights), so its curve cannot be "
            "told from another version's; rerun it, or leave it out of the ids"
        )
    return cast(PackageConditions, recorded)


def rate_params(codec: Mapping[str, Any], package: PackageConditions | None = None) -> str:
    params = codec.get("params") or {}
    return " ".join(f"{name}={params[name]}" for name in _rate_knobs(package) if name in params)


def make_point(experiment: Experiment, metric: str) -> Point:
    """A successful experiment as a curve point; refuses one that lacks the rate or the metric."""
    codec = codec_of(experiment)
    if experiment.result is None:
        raise ReportError(f"{experiment.experiment_id} has no result.json to plot")
    sequence = sequence_of(experiment.result)
    package = package_of(experiment)
    name = package["name"] if package else codec.get("name", "?")
    point = Point(experiment, sequence, curve_label(codec, package), name, rate_params(codec, package), package)
    for needed in ("bpp", metric):
        if point.metrics.get(needed) is None:
            hint = " (it ran with metrics.vmaf off); choose another --metric" if needed == "vmaf" else ""
            raise ReportError(f"{experiment.experiment_id} has no {needed} in its result.json{hint}")
    return point


def group_curves(points: Sequence[Point]) -> list[RDCurve]:
    """One curve per sequence and label, by sequence, then in the order the labels first appear."""
    labels = list(dict.fromkeys(p.curve for p in points))
    by_key: dict[tuple[SequenceId, str], list[Point]] = {}
    for point in points:
        by_key.setdefault((point.sequence, point.curve), []).append(point)
    return [
        RDCurve(label, members[0].codec, sequence, tuple(sorted(members, key=lambda p: p.bpp)))
        for (sequence, label), members in sorted(
            by_key.items(), key=lambda item: (item[0][0].sort_key, labels.index(item[0][1]))
        )
    ]


def choose_anchor(points: Sequence[Point], anchor: str | None, first_id: str) -> str:
    """The curve label --anchor names (a label, an experiment or sweep id, or a codec); by default the first id's."""
    labels = list(dict.fromkeys(p.curve for p in points))
    if anchor is None:
        return _first_label_of(points, first_id)
    matches = (
        [label for label in labels if label == anchor]
        or list(dict.fromkeys(p.curve for p in points if p.named_by(anchor)))
        or list(dict.fromkeys(p.curve for p in points if p.codec == anchor))
    )
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(f"'{label}'" for label in matches or labels)
    if not matches:
        raise ReportError(
            f"--anchor {anchor} names none of the curves ({listed}); give an experiment or sweep id, a codec name, "
            "or a curve's label"
        )
    raise ReportError(
        f"--anchor {anchor} matches {len(matches)} curves: {listed}; give one of their experiment ids "
        f"or the full label, e.g. --anchor '{matches[0]}'"
    )


def _first_label_of(points: Sequence[Point], first_id: str) -> str:
    for point in points:
        if point.named_by(first_id):
            return point.curve
    raise ReportError(f"{first_id} has no SUCCEEDED point to anchor on; choose another curve with --anchor")

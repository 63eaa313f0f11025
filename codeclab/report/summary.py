"""The BD table of a test set: every curve against the anchor, per sequence, per class and on average.

Each figure a sequence cannot give (a curve missing on it, too few points, quality that does
not rise with rate, too little overlap: see bd.py) is n/a with its reason, and the sequence is
left out of that figure's averages. Every average says over how many sequences it was taken.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from codeclab.report.bd import BDError, Curve, bd_quality, bd_rate
from codeclab.report.curves import METRICS, Metric, Point, RDCurve
from codeclab.report.sequences import AVERAGE, CLASS_PREFIX, SequenceId


@dataclass(frozen=True)
class Figure:
    value: float | None
    note: str = ""  # for a sequence, why the value is n/a; for an average, which sequences it left out
    over: int = 1  # how many sequences the value was taken over: 0 when it is n/a
    of: int = 1  # how many it could have been


@dataclass(frozen=True)
class BDRow:
    sequence: str  # a sequence's name, AVERAGE or CLASS_PREFIX + a class
    class_name: str | None
    curve: str
    metric: Metric
    points: int | None  # the curve's points on the sequence; None in an average
    bd_rate: Figure
    bd_quality: Figure

    @property
    def note(self) -> str:
        figures = {"BD-rate": self.bd_rate, "BD-quality": self.bd_quality}
        noted = {name: figure.note for name, figure in figures.items() if figure.note}
        if self.points is None:  # an average always says what it was taken over
            if self.bd_rate.note == self.bd_quality.note:
                return self.bd_rate.note
            return "; ".join(f"{name} {note}" for name, note in noted.items())
        if len(noted) == 2 and self.bd_rate.note == self.bd_quality.note:
            return f"n/a: {self.bd_rate.note}"
        return "; ".join(f"{name} n/a: {note}" for name, note in noted.items())


def measured_metrics(points: Sequence[Point]) -> list[Metric]:
    """The metrics, in METRICS' order, that at least one point measured."""
    return [m for m in METRICS.values() if any(p.metrics.get(m.key) is not None for p in points)]


def bd_rows(curves: Sequence[RDCurve], anchor: str, metrics: Sequence[Metric]) -> list[BDRow]:
    """For each curve but the anchor and each metric: a row per sequence, then (over several) per class and the
    average."""
    sequences = sorted({c.sequence for c in curves}, key=lambda s: s.sort_key)
    classes = sorted({s.class_name for s in sequences if s.class_name is not None})
    on = {(c.sequence, c.label): c for c in curves}
    rows = []
    for label in dict.fromkeys(c.label for c in curves if c.label != anchor):
        for metric in metrics:
            per_sequence = [_sequence_row(s, label, on.get((s, anchor)), on.get((s, label)), metric) for s in sequences]
            rows += per_sequence
            if len(sequences) == 1:
                continue  # an average of one sequence would only repeat it
            for class_name in classes:
                members = [r for r in per_sequence if r.class_name == class_name]
                rows.append(_average(f"{CLASS_PREFIX}{class_name}", class_name, members))
            rows.append(_average(AVERAGE, None, per_sequence))
    return rows


def _sequence_row(
    sequence: SequenceId, label: str, anchor: RDCurve | None, test: RDCurve | None, metric: Metric
) -> BDRow:
    if anchor is None or test is None:
        missing = Figure(None, f"{'the anchor' if test else 'this curve'} has no points on {sequence.name}", 0)
        rate, quality = missing, missing
    else:
        rate, quality = (_figure(delta, anchor, test, metric.key) for delta in (bd_rate, bd_quality))
    return BDRow(sequence.name, sequence.class_name, label, metric, len(test.points) if test else 0, rate, quality)


def _figure(delta: Callable[[Curve, Curve], float], anchor: RDCurve, test: RDCurve, metric: str) -> Figure:
    try:
        return Figure(delta(anchor.bd_curve(metric), test.bd_curve(metric)))
    except BDError as exc:
        return Figure(None, str(exc), 0)


def _average(name: str, class_name: str | None, rows: Sequence[BDRow]) -> BDRow:
    rate = _mean([(r.sequence, r.bd_rate) for r in rows])
    quality = _mean([(r.sequence, r.bd_quality) for r in rows])
    return BDRow(name, class_name, rows[0].curve, rows[0].metric, None, rate, quality)


def _mean(figures: Sequence[tuple[str, Figure]]) -> Figure:
    values = [f.value for _, f in figures if f.value is not None]
    left_out = [sequence for sequence, f in figures if f.value is None]
    note = f"over {len(values)} of {len(figures)} sequences"
    if left_out:
        note += f" (left out: {', '.join(left_out)})"
    return Figure(statistics.fmean(values) if values else None, note, len(values), len(figures))

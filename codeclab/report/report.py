"""`codeclab report`: RD curves and Bjøntegaard deltas of finished experiments, per sequence, under pinned conditions.

The experiments may cover one clip or a test set. Points are grouped per sequence and per
curve; each curve is compared with the anchor curve on every sequence by BD-rate (percent
bits at equal quality; negative: fewer bits than the anchor) and BD-quality (metric units at
equal rate; positive: better), in every metric the points measured, then averaged over the
sequences, overall and per class. A point measured twice is kept once, or refused when the
two disagree. A report refuses experiments whose test conditions differ unless told
otherwise, and then stamps every output with the difference.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from codeclab.report.conditions import (
    Difference,
    codec_conditions,
    condition_differences,
    measured_vmaf,
    mismatch_stamp,
    report_conditions,
    sequence_conditions,
    shared_conditions,
    shown,
    vmaf_conditions,
)
from codeclab.report.curves import (
    METRICS,
    Metric,
    Point,
    RDCurve,
    choose_anchor,
    codec_of,
    curve_label,
    group_curves,
    make_point,
    rate_params,
)
from codeclab.report.duplicates import Duplicate, deduplicate
from codeclab.report.plots import HtmlTable, Plot, write_html, write_png
from codeclab.report.runs import Experiment, ReportError, is_saved, load_experiments
from codeclab.report.sequences import SequenceId
from codeclab.report.summary import BDRow, Figure, bd_rows, measured_metrics
from codeclab.report.versions import separate_versions

SIGN_CONVENTION = (
    "BD-rate: average bitrate difference (bpp) against the anchor at equal quality, in percent; negative means "
    "fewer bits. BD-quality: average quality difference at equal rate; positive means better. PCHIP interpolation. "
    "An average is the mean over the sequences whose figure is not n/a."
)
NUMBER_COLUMNS = (  # result.json's metric, its heading in the tables, decimals shown there
    ("bpp", "bpp", 4), ("kbps", "kbps", 1), ("psnr_y", "PSNR-Y (dB)", 2), ("psnr_yuv", "PSNR-YUV (dB)", 2),
    ("ms_ssim", "MS-SSIM", 4), ("ssim", "SSIM", 4), ("vmaf", "VMAF", 2), ("encode_fps", "enc fps", 0),
    ("decode_fps", "dec fps", 0),
)  # fmt: skip
NUMBERS = tuple(key for key, _, _ in NUMBER_COLUMNS)
POINT_FIELDS = ("sequence", "class", "curve", "params", *NUMBERS, "status", "experiment_id", "requested_as")
# One row of bd.csv and of report.json's "bd": a figure is a number, or None (n/a) with the reason in the note.
# The call form, because one column is named `class`; its order is bd.csv's.
BdRecord = TypedDict(
    "BdRecord",
    {
        "sequence": str,  # a sequence's name, "average" or "class:<name>"
        "class": str | None,
        "curve": str,
        "anchor": str,
        "metric": str,
        "points": int | None,
        "bd_rate_percent": float | None,
        "bd_quality": float | None,
        "quality_unit": str,
        "bd_rate_sequences": int,
        "bd_quality_sequences": int,
        "note": str,
    },
)
BD_FIELDS = tuple(BdRecord.__annotations__)
NOT_AVAILABLE = "n/a"


class ConditionsDiffer(ReportError):
    """The experiments were not measured under the same test conditions."""

    def __init__(self, differences: Sequence[Difference]) -> None:
        self.differences = differences
        lines = "\n".join(f"  {d}" for d in differences)
        super().__init__(
            f"the test conditions differ, so these numbers are not comparable:\n{lines}\n"
            "rerun them under the same conditions, or pass --allow-mismatch to report anyway (every output is stamped)"
        )


@dataclass(frozen=True)
class Report:
    ids: Sequence[str]
    metric: Metric  # the plotted one
    metrics: Sequence[Metric]  # the BD table's: every metric the points measured
    curves: Sequence[RDCurve]  # by sequence, then label
    anchor: str  # the anchor curve's label
    skipped: Sequence[Experiment]
    duplicates: Sequence[Duplicate]
    bd: Sequence[BDRow]
    conditions: dict[str, Any]  # the pinned conditions every point shares
    differences: Sequence[Difference]
    log_rate: bool = False

    @property
    def stamp(self) -> str | None:
        return mismatch_stamp(self.differences) if self.differences else None

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(c.label for c in self.curves))

    @property
    def sequences(self) -> list[SequenceId]:
        return list(dict.fromkeys(c.sequence for c in self.curves))

    @property
    def title(self) -> str:
        sequences = self.sequences
        if len(sequences) == 1:  # the clip too, which the sources table gives for several
            clip = self.points_of(sequences[0])[0].result["conditions"]["source"]["clip"]
            return f"{panel_title(self, sequences[0])} ({clip})"
        classes = sorted({s.class_name for s in sequences if s.class_name})
        return f"{len(sequences)} sequences" + (f" in classes {', '.join(classes)}" if classes else "")

    def points_of(self, sequence: SequenceId) -> list[Point]:
        return [p for c in self.curves if c.sequence == sequence for p in c.points]


def panel_title(report: Report, sequence: SequenceId) -> str:
    """A sequence as its plot panel names it: the frames that were coded, from the first point's source."""
    source = report.points_of(sequence)[0].result["conditions"]["source"]
    size = "x".join(map(str, source.get("size") or [])) or "?"
    return (
        f"{sequence.heading}: {source.get('frames')} frames from {source.get('start')}, "
        f"{size}, {source.get('fps')} fps, {source.get('pix_fmt')}"
    )


def make_report(
    ids: Sequence[str],
    runs_dir: Path,
    metric: str,
    anchor: str | None,
    out: Path,
    allow_mismatch: bool,
    console: Console,
    log_rate: bool = False,
) -> None:
    """Build the report, write its files into `out` and show it; raises ReportError when it must refuse."""
    report = build_report(ids, runs_dir, metric, anchor, allow_mismatch, log_rate)
    print_report(report, write_report(report, out), console)


def build_report(
    ids: Sequence[str], runs_dir: Path, metric: str, anchor: str | None, allow_mismatch: bool, log_rate: bool = False
) -> Report:
    # An anchor given by id may be an experiment the ids left out: load it too.
    wanted = [*ids, anchor] if anchor and anchor not in ids and is_saved(anchor, runs_dir) else list(ids)
    experiments = load_experiments(wanted, runs_dir)
    measured = separate_versions([make_point(e, metric) for e in experiments if e.succeeded])
    if not measured:
        raise ReportError(f"none of {', '.join(ids)} has a SUCCEEDED experiment to report")
    points, duplicates = deduplicate(measured)
    anchor_label = choose_anchor(points, anchor, ids[0])
    results = {p.experiment_id: p.result for p in points}
    differences = condition_differences(
        results, {p.experiment_id: p.sequence.name for p in points}, {p.experiment_id: p.curve for p in points}
    )
    if differences and not allow_mismatch:
        raise ConditionsDiffer(differences)
    curves = group_curves(points)
    metrics = measured_metrics(points)
    vmaf = [vmaf_conditions(r) for r in results.values() if measured_vmaf(r)]
    return Report(
        ids=list(ids),
        metric=METRICS[metric],
        metrics=metrics,
        curves=curves,
        anchor=anchor_label,
        skipped=[e for e in experiments if not e.succeeded],
        duplicates=duplicates,
        bd=bd_rows(curves, anchor_label, metrics),
        conditions={
            **shared_conditions([report_conditions(r) for r in results.values()]),
            **(shared_conditions(vmaf) if vmaf else {}),
        },
        differences=differences,
        log_rate=log_rate,
    )


# -- the tables, shared by the terminal, the CSV files and the HTML page ------------------------
def bd_table(report: Report, qualities: Sequence[Metric]) -> tuple[list[str], list[list[str]]]:
    """The BD table, wide: one row per curve and sequence (then class, then average); BD-rate in every
    metric and BD-quality in `qualities`."""
    header = [
        "sequence", "class", "curve", "points",
        *(f"BD-rate {m.name} (%)" for m in report.metrics), *(f"BD-{m.heading}" for m in qualities), "note",
    ]  # fmt: skip
    by_row: dict[tuple[str, str], dict[str, BDRow]] = {}
    for row in report.bd:
        by_row.setdefault((row.curve, row.sequence), {})[row.metric.key] = row
    rows = []
    for per_metric in by_row.values():
        first = next(iter(per_metric.values()))
        rates = [_cell(per_metric[m.key].bd_rate, 2) for m in report.metrics]
        deltas = [_cell(per_metric[m.key].bd_quality, m.digits + 1) for m in qualities if m.key in per_metric]
        points = "" if first.points is None else str(first.points)
        rows.append([first.sequence, first.class_name or "", first.curve, points, *rates, *deltas, _notes(per_metric)])
    return header, rows


def bd_caption(report: Report) -> str:
    return f"Bjøntegaard deltas against {report.anchor} (rate: bpp)"


def _cell(figure: Figure, places: int) -> str:
    if figure.value is None:
        return NOT_AVAILABLE
    value = f"{figure.value:+.{places}f}"
    return value if figure.of == 1 else f"{value} ({figure.over}/{figure.of})"


def _notes(per_metric: dict[str, BDRow]) -> str:
    """The row's notes, each once with the metrics it is about, or bare if every metric has it."""
    metrics_of: dict[str, list[str]] = {}
    for row in per_metric.values():
        metrics_of.setdefault(row.note, []).append(row.metric.name)
    if len(metrics_of) == 1:
        return next(iter(metrics_of))
    return "; ".join(f"{', '.join(names)}: {note}" for note, names in metrics_of.items() if note)


def points_table(report: Report) -> tuple[list[str], list[list[str]]]:
    header = [
        "sequence", "curve", "params", *(heading for _, heading, _ in NUMBER_COLUMNS), "status", "experiment"
    ]  # fmt: skip
    rows = [
        [str(r["sequence"]), str(r["curve"]), str(r["params"])]
        + [_number(r[key], places) for key, _, places in NUMBER_COLUMNS]
        + [str(r["status"]), str(r["experiment_id"])]
        for r in point_records(report)
    ]
    return header, rows


def point_records(report: Report) -> list[dict[str, Any]]:
    """One row per point, by sequence, curve and rate, then the points the report skipped."""
    rows = [
        {
            "sequence": curve.sequence.name,
            "class": curve.sequence.class_name,
            "curve": curve.label,
            "params": point.rate_params,
            **{key: point.metrics.get(key) for key in NUMBERS},
            "status": point.experiment.status,
            "experiment_id": point.experiment_id,
            "requested_as": point.experiment.requested_as,
        }
        for curve in report.curves
        for point in curve.points
    ]
    return rows + [_skipped_record(e) for e in report.skipped]


def _skipped_record(experiment: Experiment) -> dict[str, Any]:
    codec = codec_of(experiment)
    return {
        "sequence": None,
        "class": None,
        "curve": curve_label(codec) if codec else "-",
        "params": rate_params(codec) if codec else experiment.sweep_label or "",
        **dict.fromkeys(NUMBERS),
        "status": experiment.status,
        "experiment_id": experiment.experiment_id,
        "requested_as": experiment.requested_as,
    }


def conditions_tables(report: Report) -> list[HtmlTable]:
    pinned = HtmlTable(
        "test conditions (the same for every point)",
        ["field", "value"],
        [[field, shown(value)] for field, value in report.conditions.items()],
    )
    per_sequence = HtmlTable(
        "sources (the same within each sequence)",
        ["sequence", "field", "value"],
        [
            [sequence.name, field, shown(value)]
            for sequence in report.sequences
            for field, value in _sequence_source(report, sequence).items()
        ],
    )
    per_curve = HtmlTable(
        "codec conditions (the same within each curve, on every sequence)",
        ["curve", "field", "value"],
        [
            [label, field, shown(value)]
            for label in report.labels
            for field, value in _curve_conditions(report, label).items()
        ],
    )
    return [pinned, per_sequence, per_curve]


def _sequence_source(report: Report, sequence: SequenceId) -> dict[str, Any]:
    return shared_conditions([sequence_conditions(p.result) for p in report.points_of(sequence)])


def _curve_conditions(report: Report, label: str) -> dict[str, Any]:
    points = [p for c in report.curves if c.label == label for p in c.points]
    return shared_conditions([codec_conditions(p.result) for p in points])


def _number(value: float | None, places: int) -> str:
    return "-" if value is None else f"{value:.{places}f}"


# -- files -------------------------------------------------------------------------------------
def write_report(report: Report, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("report.csv", "bd.csv", "report.json", "rd.png", "rd.html")}
    _write_csv(paths["report.csv"], list(POINT_FIELDS), [[r[f] for f in POINT_FIELDS] for r in point_records(report)])
    _write_csv(paths["bd.csv"], list(BD_FIELDS), [[r.get(f) for f in BD_FIELDS] for r in bd_records(report)])
    paths["report.json"].write_text(json.dumps(report_json(report), indent=2) + "\n")
    plot = Plot(
        curves=report.curves,
        labels=report.labels,
        anchor=report.anchor,
        metric=report.metric,
        title=report.title,
        panel_titles={sequence: panel_title(report, sequence) for sequence in report.sequences},
        differences=report.differences,
        log_rate=report.log_rate,
    )
    write_png(plot, paths["rd.png"])
    tables = [
        HtmlTable(bd_caption(report), *bd_table(report, report.metrics)),
        HtmlTable("points", *points_table(report)),
        *conditions_tables(report),
    ]
    write_html(plot, tables, paths["rd.html"])
    return paths


def bd_records(report: Report) -> list[BdRecord]:
    """bd.csv's and report.json's rows: a BD figure is a number, or n/a with the reason in the note."""
    return [
        {
            "sequence": row.sequence,
            "class": row.class_name,
            "curve": row.curve,
            "anchor": report.anchor,
            "metric": row.metric.key,
            "points": row.points,
            "bd_rate_percent": row.bd_rate.value,
            "bd_quality": row.bd_quality.value,
            "quality_unit": row.metric.unit,
            "bd_rate_sequences": row.bd_rate.over,
            "bd_quality_sequences": row.bd_quality.over,
            "note": row.note,
        }
        for row in report.bd
    ]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(
            [NOT_AVAILABLE if v is None and k.startswith("bd_") else v for k, v in zip(header, row, strict=True)]
            for row in rows
        )


def report_json(report: Report) -> dict[str, Any]:
    document: dict[str, Any] = {
        "ids": list(report.ids),
        "metric": report.metric.key,
        "metrics": [m.key for m in report.metrics],
        "rate": "bpp",
        "anchor": report.anchor,
        "sign_convention": SIGN_CONVENTION,
        "conditions": report.conditions,
        "sequences": [
            {
                "sequence": sequence.name,
                "class": sequence.class_name,
                "source": _sequence_source(report, sequence),
                "curves": {
                    c.label: [p.experiment_id for p in c.points] for c in report.curves if c.sequence == sequence
                },
            }
            for sequence in report.sequences
        ],
        "curves": [
            {"label": label, "anchor": label == report.anchor, "codec_conditions": _curve_conditions(report, label)}
            for label in report.labels
        ],
        "points": point_records(report),
        "duplicates": [{"experiment_id": d.experiment_id, "same_as": d.same_as} for d in report.duplicates],
        "bd": bd_records(report),
    }
    if report.differences:
        document["mismatch"] = {
            "stamp": report.stamp,
            "differences": [
                {
                    "field": d.field,
                    "scope": d.scope,
                    "values": [{"value": value, "experiments": list(ids)} for value, ids in d.values],
                }
                for d in report.differences
            ],
        }
    return document


# -- terminal ----------------------------------------------------------------------------------
def print_report(report: Report, paths: dict[str, Path], console: Console) -> None:
    if report.stamp:
        console.print(Text(report.stamp, style="bold white on red"))
    console.print(Text(f"{report.title}; anchor: {report.anchor}"))
    header, rows = bd_table(report, [report.metric])
    console.print(_rich_table(bd_caption(report), header[:-1], [row[:-1] for row in rows]))
    for row in rows:  # the notes under the table: a column of them would squeeze the figures out of a terminal
        if row[-1]:
            console.print(Text(f"{row[2]} on {row[0]}: {row[-1]}", style="yellow"))
    console.print(Text(SIGN_CONVENTION + " Every metric's BD-quality: bd.csv and rd.html.", style="dim"))
    for duplicate in report.duplicates:
        console.print(Text(f"dropped {duplicate.experiment_id}: the same point as {duplicate.same_as}, same numbers"))
    for experiment in report.skipped:
        console.print(Text(_skipped_line(experiment), style="yellow"))
    for path in paths.values():
        console.print(Text(f"wrote {path}"))
    if report.stamp:
        console.print(Text(report.stamp, style="bold white on red"))


def _skipped_line(experiment: Experiment) -> str:
    label = f" ({experiment.sweep_label})" if experiment.sweep_label else ""
    return (
        f"skipped {experiment.experiment_id}{label} of sweep {experiment.requested_as}: "
        f"{experiment.status}, not SUCCEEDED"
    )


def _rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(header):
        if column in {"sequence", "class", "curve"}:
            table.add_column(column, no_wrap=True)
        else:  # the heading may wrap, never a figure
            table.add_column(column, justify="right", min_width=max((len(row[index]) for row in rows), default=1))
    for row in rows:
        table.add_row(*map(Text, row))  # Text, not markup: labels and ids may hold [ and ]
    return table

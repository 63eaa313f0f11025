"""`codeclab report`: RD curves and Bjøntegaard deltas of finished experiments, under pinned conditions.

Every curve is compared with the anchor by BD-rate (percent bits at equal quality; negative:
fewer bits than the anchor) and BD-quality (metric units at equal rate; positive: better).
A report refuses experiments whose test conditions differ unless told otherwise, and then
stamps every output with the difference.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from codeclab.report.bd import BDError, bd_quality, bd_rate
from codeclab.report.conditions import (
    Difference,
    codec_conditions,
    condition_differences,
    mismatch_stamp,
    pinned_conditions,
    shared_conditions,
    shown,
)
from codeclab.report.curves import (
    METRICS,
    Metric,
    RDCurve,
    choose_anchor,
    codec_of,
    curve_label,
    group_curves,
    make_point,
    rate_params,
)
from codeclab.report.plots import HtmlTable, Plot, write_html, write_png
from codeclab.report.runs import Experiment, ReportError, is_saved, load_experiments

SIGN_CONVENTION = (
    "BD-rate: average bitrate difference (bpp) against the anchor at equal quality, in percent; negative means "
    "fewer bits. BD-quality: average quality difference at equal rate; positive means better. PCHIP interpolation."
)
NUMBER_COLUMNS = (  # result.json's metric, its heading in the tables, decimals shown there
    ("bpp", "bpp", 4), ("kbps", "kbps", 1), ("psnr_yuv", "PSNR-YUV (dB)", 2), ("ms_ssim", "MS-SSIM", 4),
    ("vmaf", "VMAF", 2), ("encode_fps", "enc fps", 0), ("decode_fps", "dec fps", 0),
)  # fmt: skip
NUMBERS = tuple(key for key, _, _ in NUMBER_COLUMNS)
POINT_FIELDS = ("curve", "params", *NUMBERS, "status", "experiment_id", "requested_as")
NOT_AVAILABLE, ANCHOR = "n/a", "anchor"


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
class BDRow:
    curve: RDCurve
    bd_rate: float | None
    bd_quality: float | None
    note: str  # ANCHOR, "n/a: <why>" or empty


@dataclass(frozen=True)
class Report:
    ids: Sequence[str]
    metric: Metric
    curves: Sequence[RDCurve]
    anchor: RDCurve
    skipped: Sequence[Experiment]
    bd: Sequence[BDRow]
    conditions: dict[str, Any]  # the pinned conditions every point shares
    differences: Sequence[Difference]

    @property
    def stamp(self) -> str | None:
        return mismatch_stamp(self.differences) if self.differences else None

    @property
    def title(self) -> str:
        """The anchor's source, as the plots' titles show it."""
        source = self.anchor.points[0].result["conditions"]["source"]
        size = "x".join(map(str, source.get("size") or [])) or "?"
        return (
            f"{source.get('clip')}, {source.get('frames')} frames from {source.get('start')}, {size}, "
            f"{source.get('fps')} fps, {source.get('pix_fmt')}"
        )


def make_report(
    ids: Sequence[str],
    runs_dir: Path,
    metric: str,
    anchor: str | None,
    out: Path,
    allow_mismatch: bool,
    console: Console,
) -> None:
    """Build the report, write its files into `out` and show it; raises ReportError when it must refuse."""
    report = build_report(ids, runs_dir, metric, anchor, allow_mismatch)
    print_report(report, write_report(report, out), console)


def build_report(ids: Sequence[str], runs_dir: Path, metric: str, anchor: str | None, allow_mismatch: bool) -> Report:
    # An anchor given by id may be an experiment the ids left out: load it too.
    wanted = [*ids, anchor] if anchor and anchor not in ids and is_saved(anchor, runs_dir) else list(ids)
    experiments = load_experiments(wanted, runs_dir)
    points = [make_point(e, metric) for e in experiments if e.succeeded]
    if not points:
        raise ReportError(f"none of {', '.join(ids)} has a SUCCEEDED experiment to report")
    curves = group_curves(points)
    anchor_curve = choose_anchor(curves, anchor, ids[0])
    results = {p.experiment_id: p.result for p in points}
    differences = condition_differences(results, metric, {p.experiment_id: p.curve for p in points})
    if differences and not allow_mismatch:
        raise ConditionsDiffer(differences)
    return Report(
        ids=list(ids),
        metric=METRICS[metric],
        curves=curves,
        anchor=anchor_curve,
        skipped=[e for e in experiments if not e.succeeded],
        bd=[_bd_row(anchor_curve, curve, metric) for curve in curves],
        conditions=shared_conditions([pinned_conditions(r, metric) for r in results.values()]),
        differences=differences,
    )


def _bd_row(anchor: RDCurve, curve: RDCurve, metric: str) -> BDRow:
    if curve is anchor:
        return BDRow(curve, None, None, ANCHOR)
    base, test = anchor.bd_curve(metric), curve.bd_curve(metric)
    values: list[float | None] = []
    reasons: list[str] = []
    for delta in (bd_rate, bd_quality):
        try:
            values.append(delta(base, test))
        except BDError as exc:
            values.append(None)
            reasons.append(str(exc))
    note = f"{NOT_AVAILABLE}: " + "; ".join(dict.fromkeys(reasons)) if reasons else ""
    return BDRow(curve, values[0], values[1], note)


# -- the tables, shared by the terminal, the CSV files and the HTML page ------------------------
def bd_table(report: Report) -> tuple[list[str], list[list[str]]]:
    metric = report.metric
    header = ["curve", "points", "BD-rate (%)", f"BD-{metric.heading}", "note"]
    rows = [
        [
            row.curve.label,
            str(len(row.curve.points)),
            _delta(row.bd_rate, 2, row.note),
            _delta(row.bd_quality, metric.digits + 1, row.note),
            row.note,
        ]
        for row in report.bd
    ]
    return header, rows


def bd_caption(report: Report) -> str:
    return f"Bjøntegaard deltas against {report.anchor.label} (rate: bpp, quality: {report.metric.heading})"


def points_table(report: Report) -> tuple[list[str], list[list[str]]]:
    header = ["curve", "params", *(heading for _, heading, _ in NUMBER_COLUMNS), "status", "experiment"]
    rows = [
        [str(r["curve"]), str(r["params"])]
        + [_number(r[key], places) for key, _, places in NUMBER_COLUMNS]
        + [str(r["status"]), str(r["experiment_id"])]
        for r in point_records(report)
    ]
    return header, rows


def point_records(report: Report) -> list[dict[str, Any]]:
    """One row per point, by curve and rate, then the points the report skipped."""
    rows = [
        {
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
    per_curve = HtmlTable(
        "codec conditions (the same within each curve)",
        ["curve", "field", "value"],
        [
            [curve.label, field, shown(value)]
            for curve in report.curves
            for field, value in _curve_conditions(curve).items()
        ],
    )
    return [pinned, per_curve]


def _curve_conditions(curve: RDCurve) -> dict[str, Any]:
    return shared_conditions([codec_conditions(p.experiment.result or {}) for p in curve.points])


def _delta(value: float | None, places: int, note: str) -> str:
    return _missing(note) if value is None else f"{value:+.{places}f}"


def _missing(note: str) -> str:
    """What a BD cell says without a number: the anchor's own row, or a delta that cannot be computed."""
    return ANCHOR if note == ANCHOR else NOT_AVAILABLE


def _number(value: float | None, places: int) -> str:
    return "-" if value is None else f"{value:.{places}f}"


# -- files -------------------------------------------------------------------------------------
def write_report(report: Report, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("report.csv", "bd.csv", "report.json", "rd.png", "rd.html")}
    _write_csv(paths["report.csv"], list(POINT_FIELDS), [[r[f] for f in POINT_FIELDS] for r in point_records(report)])
    _write_csv(paths["bd.csv"], *_bd_csv(report))
    paths["report.json"].write_text(json.dumps(report_json(report), indent=2) + "\n")
    plot = Plot(report.curves, report.anchor, report.metric, report.title, report.differences)
    write_png(plot, paths["rd.png"])
    bd_header, bd_rows = bd_table(report)
    points_header, points_rows = points_table(report)
    tables = [
        HtmlTable(bd_caption(report), bd_header, bd_rows),
        HtmlTable("points", points_header, points_rows),
        *conditions_tables(report),
    ]
    write_html(plot, tables, paths["rd.html"])
    return paths


def _bd_csv(report: Report) -> tuple[list[str], list[list[Any]]]:
    quality = f"bd_{report.metric.key}" + ("_db" if report.metric.unit == "dB" else "")
    header = ["anchor", "curve", "codec", "points", "bd_rate_percent", quality, "note"]
    rows = [
        [
            report.anchor.label,
            row.curve.label,
            row.curve.codec,
            len(row.curve.points),
            *(_csv_delta(value, row.note) for value in (row.bd_rate, row.bd_quality)),
            row.note,
        ]
        for row in report.bd
    ]
    return header, rows


def _csv_delta(value: float | None, note: str) -> float | str:
    return _missing(note) if value is None else value


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def report_json(report: Report) -> dict[str, Any]:
    document: dict[str, Any] = {
        "ids": list(report.ids),
        "metric": report.metric.key,
        "rate": "bpp",
        "anchor": report.anchor.label,
        "sign_convention": SIGN_CONVENTION,
        "conditions": report.conditions,
        "curves": [
            {
                "label": curve.label,
                "codec": curve.codec,
                "anchor": curve is report.anchor,
                "codec_conditions": _curve_conditions(curve),
                "experiments": [p.experiment_id for p in curve.points],
            }
            for curve in report.curves
        ],
        "points": point_records(report),
        "bd": [
            {
                "curve": row.curve.label,
                "points": len(row.curve.points),
                "bd_rate_percent": row.bd_rate,
                "bd_quality": row.bd_quality,
                "bd_quality_unit": report.metric.unit or report.metric.name,
                "note": row.note,
            }
            for row in report.bd
        ],
    }
    if report.differences:
        document["mismatch"] = {
            "stamp": report.stamp,
            "differences": [
                {
                    "field": d.field,
                    "curve": d.curve,
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
    console.print(Text(f"{report.title}; metric {report.metric.heading}; anchor: {report.anchor.label}"))
    bd_header, bd_rows = bd_table(report)
    console.print(_rich_table(bd_caption(report), bd_header, bd_rows))
    console.print(Text(SIGN_CONVENTION, style="dim"))
    console.print(_rich_table("points", *points_table(report)))
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
    for column in header:
        text = column in {"curve", "params", "status", "experiment", "note"}
        table.add_column(column, no_wrap=column != "note", justify="left" if text else "right")
    for row in rows:
        table.add_row(*map(Text, row))  # Text, not markup: labels and ids may hold [ and ]
    return table

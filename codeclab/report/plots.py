"""The RD plots twice, one panel per sequence: a PNG grid for papers and a self-contained interactive HTML page.

The page loads nothing from anywhere: the panels are inline SVG drawn here, and a small
inline script adds hover details, legend toggles (a curve's label across every panel) and
sorting by clicking a table's column, then writes what it rendered into #status so a
headless browser can tell that it ran.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none needed

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from codeclab.report.conditions import STAMP, Difference
from codeclab.report.curves import Metric, Point, RDCurve
from codeclab.report.sequences import SequenceId

COLOURS = [to_hex(matplotlib.colormaps["tab10"](index)) for index in range(10)]
RATE_AXIS = "bits per pixel (bpp)"
SVG_WIDTH, SVG_HEIGHT = 420, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 14, 12, 44  # room for the tick labels and axis titles
PNG_COLUMNS, PNG_PANEL = 3, (4.4, 3.3)  # panels per row and each panel's size in inches
PNG_LEGEND_ROW, PNG_TITLE = 0.2, 0.75  # inches below the panels per row of the legend, above them for the title
PNG_TITLE_WIDTH, PNG_SUPTITLE_WIDTH = 60, 48  # characters per line of a panel's title, and of the figure's per column
LOG_TICKS = (1.0, 2.0, 5.0)  # a log rate axis is ticked at these times the powers of ten
STAMP_WIDTH, STAMP_LINES = 48, 4  # characters and lines of the PNG's stamp


@dataclass(frozen=True)
class Plot:
    """What both renderings show."""

    curves: Sequence[RDCurve]
    labels: Sequence[str]  # every curve label, in the order of the legend and the colours
    anchor: str
    metric: Metric
    title: str
    panel_titles: Mapping[SequenceId, str]  # one panel per sequence, in this order
    differences: Sequence[Difference]  # empty unless --allow-mismatch let differing conditions through
    log_rate: bool = False

    def colour(self, label: str) -> str:
        return COLOURS[self.labels.index(label) % len(COLOURS)]

    def legend_label(self, label: str) -> str:
        return f"{label} (anchor)" if label == self.anchor else label

    def panel(self, sequence: SequenceId) -> list[RDCurve]:
        return [curve for curve in self.curves if curve.sequence == sequence]

    def quality(self, point: Point) -> float:
        return point.quality(self.metric.key)


@dataclass(frozen=True)
class HtmlTable:
    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


def write_png(plot: Plot, path: Path) -> None:
    figure = png_figure(plot)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def png_figure(plot: Plot) -> Figure:
    count = len(plot.panel_titles)
    columns = min(PNG_COLUMNS, count)
    rows = math.ceil(count / columns)
    legend_columns = min(len(plot.labels), columns)  # a curve's label may be as wide as a panel
    legend = PNG_LEGEND_ROW * (1 + math.ceil(len(plot.labels) / max(legend_columns, 1)))
    width, height = PNG_PANEL[0] * columns, PNG_PANEL[1] * rows + legend + PNG_TITLE
    figure, grid = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    # fixed margins in inches: tight_layout would take as long as drawing the figure
    figure.subplots_adjust(
        left=0.7 / width, right=1 - 0.2 / width, top=1 - PNG_TITLE / height, bottom=(legend + 0.45) / height,
        wspace=0.35, hspace=0.55,
    )  # fmt: skip
    for axes, (sequence, title) in zip(grid.flat, plot.panel_titles.items(), strict=False):
        _png_panel(plot, axes, plot.panel(sequence), title)
    for axes in list(grid.flat)[count:]:
        axes.set_visible(False)
    handles = [
        Line2D([], [], color=plot.colour(label), marker="o", linestyle="--" if label == plot.anchor else "-")
        for label in plot.labels
    ]
    figure.legend(handles, [plot.legend_label(label) for label in plot.labels], loc="lower center",
                  ncol=max(legend_columns, 1), fontsize=8, frameon=False)  # fmt: skip
    figure.suptitle(textwrap.fill(plot.title, PNG_SUPTITLE_WIDTH * columns), fontsize=10)
    if plot.differences:
        figure.text(
            0.5, 0.5, _png_stamp(plot.differences),
            color="red", fontsize=15, fontweight="bold", ha="center", va="center", rotation=12, zorder=10,
            bbox={"facecolor": "white", "edgecolor": "red", "linewidth": 3, "alpha": 0.85},
        )  # fmt: skip
    return figure


def _png_panel(plot: Plot, axes: plt.Axes, curves: Sequence[RDCurve], title: str) -> None:
    for curve in curves:
        axes.plot(
            [p.bpp for p in curve.points],
            [plot.quality(p) for p in curve.points],
            marker="o",
            linestyle="--" if curve.label == plot.anchor else "-",
            color=plot.colour(curve.label),
        )
    if plot.log_rate:
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=LOG_TICKS))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(RATE_AXIS, fontsize=8)
    axes.set_ylabel(plot.metric.heading, fontsize=8)
    axes.set_title(textwrap.fill(title, PNG_TITLE_WIDTH), fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)


def _png_stamp(differences: Sequence[Difference]) -> str:
    """The stamp short enough for a figure: each field with its values (not the ids), long ones cut."""
    lines = [
        textwrap.shorten(f"{d.field}: " + " vs ".join(value for value, _ in d.values), STAMP_WIDTH, placeholder="...")
        for d in differences
    ]
    return "\n".join([f"{STAMP}:", *lines[:STAMP_LINES], "(details: report.json)"])


def write_html(plot: Plot, tables: Sequence[HtmlTable], path: Path) -> None:
    e = html.escape
    stamp = ""
    if plot.differences:
        items = "".join(f"<li>{e(str(d))}</li>" for d in plot.differences)
        stamp = f'<div class="stamp" id="mismatch"><strong>{STAMP}:</strong><ul>{items}</ul></div>'
    legend = "".join(
        f'<li data-curve="{index}"><span class="swatch" style="background:{plot.colour(label)}"></span>'
        f"{e(plot.legend_label(label))}</li>"
        for index, label in enumerate(plot.labels)
    )
    panels = "".join(
        f'<figure class="panel"><figcaption>{e(title)}</figcaption>{_svg(plot, plot.panel(sequence))}</figure>'
        for sequence, title in plot.panel_titles.items()
    )
    path.write_text(
        PAGE.format(
            title=e(plot.title),
            stamp=stamp,
            panels=panels,
            legend=legend,
            tables="".join(_html_table(table) for table in tables),
            style=STYLE,
            script=SCRIPT,
        )
    )


def _svg(plot: Plot, curves: Sequence[RDCurve]) -> str:
    """One sequence's panel; on --log-rate the x axis is log10(bpp), ticked in bpp."""

    def scale(bpp: float) -> float:
        return math.log10(bpp) if plot.log_rate else bpp

    x_range = _padded_range([scale(p.bpp) for c in curves for p in c.points])
    y_range = _padded_range([plot.quality(p) for c in curves for p in c.points])

    def x(value: float) -> float:
        return LEFT + (scale(value) - x_range[0]) / (x_range[1] - x_range[0]) * (SVG_WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return SVG_HEIGHT - BOTTOM - (value - y_range[0]) / (y_range[1] - y_range[0]) * (SVG_HEIGHT - TOP - BOTTOM)

    x_ticks = _log_ticks(x_range) if plot.log_rate else _ticks(x_range)
    parts = [_axes(x_ticks, _ticks(y_range), x, y, plot.metric)]
    for curve in curves:
        colour, index = plot.colour(curve.label), plot.labels.index(curve.label)
        line = " ".join(f"{x(p.bpp):.1f},{y(plot.quality(p)):.1f}" for p in curve.points)
        dash = ' stroke-dasharray="7 4"' if curve.label == plot.anchor else ""
        dots = "".join(
            f'<circle cx="{x(p.bpp):.1f}" cy="{y(plot.quality(p)):.1f}" r="4" fill="{colour}" '
            f'data-tip="{html.escape(_tip(p, plot.metric))}"></circle>'
            for p in curve.points
        )
        parts.append(
            f'<g class="curve" data-curve="{index}"><polyline points="{line}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash}></polyline>{dots}</g>'
        )
    return (
        f'<svg viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" width="{SVG_WIDTH}" height="{SVG_HEIGHT}" role="img">'
        + "".join(parts)
        + "</svg>"
    )


def _axes(
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x: Callable[[float], float],
    y: Callable[[float], float],
    metric: Metric,
) -> str:
    """The frame, grid and labels; ticks are in the data's units (bpp, even on a log axis)."""
    bottom, right = SVG_HEIGHT - BOTTOM, SVG_WIDTH - RIGHT
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" class="frame"></rect>']
    for tick in x_ticks:
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" y2="{bottom}" class="grid"></line>')
        parts.append(f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in y_ticks:
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"></line>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<text x="{(LEFT + right) / 2}" y="{SVG_HEIGHT - 8}" text-anchor="middle">{RATE_AXIS}</text>')
    middle = (TOP + bottom) / 2
    parts.append(
        f'<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})">'
        f"{html.escape(metric.heading)}</text>"
    )
    return "".join(parts)


def _padded_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.06 or abs(high) * 0.05 or 1.0  # a single point still gets a visible range
    return low - pad, high + pad


def _ticks(value_range: tuple[float, float]) -> list[float]:
    low, high = value_range
    return [float(t) for t in MaxNLocator(nbins=6).tick_values(low, high) if low <= t <= high]


def _log_ticks(log_range: tuple[float, float]) -> list[float]:
    """Ticks in bpp at 1, 2 and 5 times the powers of ten inside a range of log10(bpp)."""
    low, high = 10 ** log_range[0], 10 ** log_range[1]
    return [float(t) for t in LogLocator(subs=LOG_TICKS).tick_values(low, high) if low <= t <= high]


def _tip(point: Point, metric: Metric) -> str:
    m = point.metrics
    return "\n".join(
        [
            point.sequence.heading,
            point.curve,
            point.rate_params or "(no rate knob)",
            f"bpp {point.bpp:.4f}",
            f"{metric.heading} {point.quality(metric.key):.{metric.digits}f}",
            f"encode {m.get('encode_fps') or 0:.0f} fps, decode {m.get('decode_fps') or 0:.0f} fps",
            point.experiment_id,
        ]
    )


def _html_table(table: HtmlTable) -> str:
    e = html.escape
    head = "".join(f'<th title="click to sort">{e(cell)}</th>' for cell in table.header)
    body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return (
        f'<table class="sortable"><caption>{e(table.caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
.subtitle { color: #555; }
.stamp { border: 3px solid #c00; color: #c00; background: #fff4f4; padding: 8px 12px; margin: 12px 0; }
.stamp strong { font-size: 18px; letter-spacing: 0.05em; }
#status { color: #888; font-size: 12px; }
.plots { display: flex; gap: 16px; align-items: flex-start; }
.panels { display: flex; flex-wrap: wrap; gap: 8px; }
.panel { margin: 0; }
.panel figcaption { font-size: 12px; font-weight: 600; }
svg text { font-size: 11px; fill: #333; }
svg .frame { fill: none; stroke: #999; }
svg .grid { stroke: #e4e4e4; }
svg circle { cursor: pointer; }
svg circle:hover { stroke: #000; stroke-width: 2; }
g.curve.hidden { display: none; }
#legend { list-style: none; padding: 0; margin: 20px 0 0; min-width: 200px; }
#legend li { cursor: pointer; padding: 3px 6px; user-select: none; }
#legend li.off { opacity: 0.35; text-decoration: line-through; }
.swatch { display: inline-block; width: 14px; height: 14px; margin-right: 6px; vertical-align: -2px; }
#tip { position: absolute; background: #fff; border: 1px solid #888; padding: 6px 8px; white-space: pre;
       font-size: 12px; pointer-events: none; box-shadow: 0 2px 6px rgba(0, 0, 0, 0.2); }
table { border-collapse: collapse; margin: 20px 0; }
caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { cursor: pointer; background: #f6f6f6; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td { max-width: 720px; }
"""

# Sorting: a column whose every cell is a number (an average's "(5/6)" after it is fine) or a gap
# (n/a, -, anchor, empty) sorts by number, gaps last either way; any other column sorts as text.
SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  var curves = document.querySelectorAll("svg g.curve");
  var NUMBER = /^[+-]?\\d+(\\.\\d+)?([eE][+-]?\\d+)?(\\s.*)?$/, GAP = /^(n\\/a.*|-|anchor|)$/;
  function place(event) {
    tip.style.left = event.pageX + 14 + "px";
    tip.style.top = event.pageY + 14 + "px";
  }
  document.querySelectorAll("#legend li").forEach(function (item) {
    item.addEventListener("click", function () {
      var shown = !item.classList.toggle("off");
      document.querySelectorAll('svg g.curve[data-curve="' + item.dataset.curve + '"]').forEach(function (curve) {
        curve.classList.toggle("hidden", !shown);
      });
    });
  });
  document.querySelectorAll("svg circle[data-tip]").forEach(function (dot) {
    dot.addEventListener("mouseenter", function (event) {
      tip.textContent = dot.dataset.tip;
      tip.hidden = false;
      place(event);
    });
    dot.addEventListener("mousemove", place);
    dot.addEventListener("mouseleave", function () { tip.hidden = true; });
  });
  function sortBy(table, th, column) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var texts = rows.map(function (row) { return row.cells[column].textContent.trim(); });
    var numeric = texts.every(function (text) { return NUMBER.test(text) || GAP.test(text); });
    var keyed = rows.map(function (row, index) {
      var text = texts[index];
      return {row: row, text: text, gap: numeric && !NUMBER.test(text), number: parseFloat(text)};
    });
    keyed.sort(function (a, b) {
      if (a.gap !== b.gap) { return a.gap ? 1 : -1; }
      var order = numeric && !a.gap ? a.number - b.number : a.text.localeCompare(b.text);
      return ascending ? order : -order;
    });
    keyed.forEach(function (entry) { body.appendChild(entry.row); });
    table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  var sortable = document.querySelectorAll("table.sortable");
  sortable.forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, column) {
      th.addEventListener("click", function () { sortBy(table, th, column); });
    });
  });
  document.getElementById("status").textContent = "rendered " + curves.length + " curves in " +
    document.querySelectorAll("figure.panel").length + " panels; " + sortable.length + " sortable tables";
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>RD report: {title}</title>
<style>{style}</style>
</head>
<body>
<h1>Rate-distortion report</h1>
<p class="subtitle">{title}</p>
{stamp}
<div id="status">the page's script has not run</div>
<div class="plots"><div class="panels">{panels}</div><ul id="legend">{legend}</ul></div>
<div id="tip" hidden></div>
{tables}
<script>{script}</script>
</body>
</html>
"""

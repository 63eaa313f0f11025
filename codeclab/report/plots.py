"""The RD plot twice: a PNG for papers and a self-contained interactive HTML page.

The page loads nothing from anywhere: the plot is inline SVG drawn here, and a small inline
script adds hover details and legend toggles, then writes `rendered N curves` into
#status so a headless browser can tell that it ran.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none needed

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.ticker import MaxNLocator

from codeclab.report.conditions import STAMP, Difference
from codeclab.report.curves import Metric, Point, RDCurve

COLOURS = [to_hex(matplotlib.colormaps["tab10"](index)) for index in range(10)]
RATE_AXIS = "bits per pixel (bpp)"
SVG_WIDTH, SVG_HEIGHT = 760, 460
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 50  # room for the tick labels and axis titles
STAMP_WIDTH, STAMP_LINES = 48, 4  # characters and lines of the PNG's stamp


@dataclass(frozen=True)
class Plot:
    """What both renderings show."""

    curves: Sequence[RDCurve]
    anchor: RDCurve
    metric: Metric
    title: str
    differences: Sequence[Difference]  # empty unless --allow-mismatch let differing conditions through

    def colour(self, curve: RDCurve) -> str:
        return COLOURS[self.curves.index(curve) % len(COLOURS)]

    def legend_label(self, curve: RDCurve) -> str:
        return f"{curve.label} (anchor)" if curve is self.anchor else curve.label


@dataclass(frozen=True)
class HtmlTable:
    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


def write_png(plot: Plot, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for curve in plot.curves:
        axes.plot(
            [p.bpp for p in curve.points],
            [p.quality(plot.metric.key) for p in curve.points],
            marker="o",
            linestyle="--" if curve is plot.anchor else "-",
            color=plot.colour(curve),
            label=plot.legend_label(curve),
        )
    axes.set_xlabel(RATE_AXIS)
    axes.set_ylabel(plot.metric.heading)
    axes.set_title(plot.title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    if plot.differences:
        figure.text(
            0.5, 0.5, _png_stamp(plot.differences),
            color="red", fontsize=15, fontweight="bold", ha="center", va="center", rotation=12, zorder=10,
            bbox={"facecolor": "white", "edgecolor": "red", "linewidth": 3, "alpha": 0.85},
        )  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


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
        f'<li data-curve="{index}"><span class="swatch" style="background:{plot.colour(curve)}"></span>'
        f"{e(plot.legend_label(curve))}</li>"
        for index, curve in enumerate(plot.curves)
    )
    path.write_text(
        PAGE.format(
            title=e(plot.title),
            stamp=stamp,
            svg=_svg(plot),
            legend=legend,
            tables="".join(_html_table(table) for table in tables),
            style=STYLE,
            script=SCRIPT,
        )
    )


def _svg(plot: Plot) -> str:
    x_range = _padded_range([p.bpp for c in plot.curves for p in c.points])
    y_range = _padded_range([p.quality(plot.metric.key) for c in plot.curves for p in c.points])

    def x(value: float) -> float:
        return LEFT + (value - x_range[0]) / (x_range[1] - x_range[0]) * (SVG_WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return SVG_HEIGHT - BOTTOM - (value - y_range[0]) / (y_range[1] - y_range[0]) * (SVG_HEIGHT - TOP - BOTTOM)

    parts = [_axes(x_range, y_range, x, y, plot.metric)]
    for index, curve in enumerate(plot.curves):
        colour = plot.colour(curve)
        line = " ".join(f"{x(p.bpp):.1f},{y(p.quality(plot.metric.key)):.1f}" for p in curve.points)
        dash = ' stroke-dasharray="7 4"' if curve is plot.anchor else ""
        dots = "".join(
            f'<circle cx="{x(p.bpp):.1f}" cy="{y(p.quality(plot.metric.key)):.1f}" r="4.5" fill="{colour}" '
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
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x: Callable[[float], float],
    y: Callable[[float], float],
    metric: Metric,
) -> str:
    bottom, right = SVG_HEIGHT - BOTTOM, SVG_WIDTH - RIGHT
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" class="frame"></rect>']
    for tick in _ticks(x_range):
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" y2="{bottom}" class="grid"></line>')
        parts.append(f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in _ticks(y_range):
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"></line>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<text x="{(LEFT + right) / 2}" y="{SVG_HEIGHT - 10}" text-anchor="middle">{RATE_AXIS}</text>')
    middle = (TOP + bottom) / 2
    parts.append(
        f'<text x="16" y="{middle}" text-anchor="middle" transform="rotate(-90 16 {middle})">'
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


def _tip(point: Point, metric: Metric) -> str:
    m = point.metrics
    return "\n".join(
        [
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
    head = "".join(f"<th>{e(cell)}</th>" for cell in table.header)
    body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><caption>{e(table.caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
.subtitle { color: #555; }
.stamp { border: 3px solid #c00; color: #c00; background: #fff4f4; padding: 8px 12px; margin: 12px 0; }
.stamp strong { font-size: 18px; letter-spacing: 0.05em; }
#status { color: #888; font-size: 12px; }
.plot { display: flex; gap: 16px; align-items: flex-start; }
svg text { font-size: 12px; fill: #333; }
svg .frame { fill: none; stroke: #999; }
svg .grid { stroke: #e4e4e4; }
svg circle { cursor: pointer; }
svg circle:hover { stroke: #000; stroke-width: 2; }
g.curve.hidden { display: none; }
#legend { list-style: none; padding: 0; margin: 20px 0 0; }
#legend li { cursor: pointer; padding: 3px 6px; user-select: none; }
#legend li.off { opacity: 0.35; text-decoration: line-through; }
.swatch { display: inline-block; width: 14px; height: 14px; margin-right: 6px; vertical-align: -2px; }
#tip { position: absolute; background: #fff; border: 1px solid #888; padding: 6px 8px; white-space: pre;
       font-size: 12px; pointer-events: none; box-shadow: 0 2px 6px rgba(0, 0, 0, 0.2); }
table { border-collapse: collapse; margin: 20px 0; }
caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td { max-width: 720px; }
"""

SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  var curves = document.querySelectorAll("svg g.curve");
  function place(event) {
    tip.style.left = event.pageX + 14 + "px";
    tip.style.top = event.pageY + 14 + "px";
  }
  document.querySelectorAll("#legend li").forEach(function (item) {
    item.addEventListener("click", function () {
      var curve = document.querySelector('svg g.curve[data-curve="' + item.dataset.curve + '"]');
      item.classList.toggle("off", curve.classList.toggle("hidden"));
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
  document.getElementById("status").textContent = "rendered " + curves.length + " curves";
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
<div class="plot">{svg}<ul id="legend">{legend}</ul></div>
<div id="tip" hidden></div>
{tables}
<script>{script}</script>
</body>
</html>
"""

"""Rate-distortion benchmark: the built-in learned video codec against its own all-intra mode and the anchors.

Run by `make bench` (or alone: `.venv/bin/python benchmarks/bench_rd.py`). On the two
evaluation clips, which the learned codec never saw in training (BBB frames 0-31 scaled to
448x256, and carphone's 120 frames), the learned codec codes its six quality levels twice,
with its default intra period (32) and all-intra (intra_period 1), and every other codec
codes four rate points. Each point is a real bitstream, decoded from the file alone and
measured with codeclab's own metrics. The script prints the RD table with BD-rates against
x264 all-intra (PCHIP), then the learned codec's targets (issue 19): BD-rate against x264
all-intra and against its own all-intra mode, its gap to x264 and x265 medium, and its top
PSNR on BBB; and its speed at 720p. It writes the figures to benchmarks/results/bench_rd.json
and an RD plot per clip as PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none needed

import matplotlib.pyplot as plt
import torch
from bench_summary import RUN_ID_ENV, run_stamp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from codeclab.report.bd import BDError, Curve, bd_quality, bd_rate
from codeclab.training.data import EVAL_SOURCES
from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.ffmpeg import library_versions
from codeclab.worker.metrics import measure_quality
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video, read_y4m

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ANCHOR = "x264 all-intra"


@dataclass(frozen=True)
class Family:
    label: str
    codec: str
    fixed: dict[str, Any]
    knob: str
    values: tuple[int, ...]


# Rate points chosen so every curve overlaps the learned codec's quality range (about 29-40 dB
# PSNR-YUV here), which BD figures need: the anchor's QPs reach from below its lowest level to above its top.
LEARNED, LEARNED_INTRA = "learned", "learned all-intra"
FAMILIES = (
    Family(LEARNED, "learned", {"device": "cpu", "threads": 2, "intra_period": 32}, "quality", (1, 2, 3, 4, 5, 6)),
    Family(LEARNED_INTRA, "learned", {"device": "cpu", "threads": 2, "intra_period": 1}, "quality", (1, 2, 3, 4, 5, 6)),
    Family("jpeg", "jpeg", {}, "quality", (10, 25, 50, 80)),
    Family("webp", "webp", {}, "quality", (5, 20, 50, 80)),
    Family("avif", "avif", {"speed": 6}, "quality", (20, 40, 60, 75)),
    Family(ANCHOR, "x264", {"keyint": 1, "threads": 1}, "qp", (26, 31, 36, 41, 46, 51)),
    Family("x264", "x264", {"threads": 1}, "crf", (23, 28, 33, 38, 43)),
    Family("x265", "x265", {"threads": 1}, "crf", (23, 28, 33, 38, 43)),
    Family("svtav1", "svtav1", {"preset": 8, "threads": 1}, "crf", (40, 48, 56, 63)),
)
# The learned codec's evaluation split, which its training never touches.
CLIPS = dict(zip(("bbb 448x256", "carphone 176x144"), EVAL_SOURCES, strict=True))
SPEED_720P = {"clip": "builtin:bbb", "start": 0, "frames": 8}  # 1280x720 as shipped


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the usual log scale, -10*log10(1 - MS-SSIM), so BD integrates a spread-out axis."""
    return -10 * math.log10(max(1e-10, 1 - value))


def ignore(_count: int) -> None:
    """on_frame callback: progress is shown per point."""


def code_point(codec_name: str, params: dict[str, Any], ref: Video, ref_y4m: Path, workdir: Path) -> dict[str, Any]:
    codec = make_codec(codec_name, params)
    bitstream = workdir / f"point{codec.bitstream_suffix}"
    bitstream.unlink(missing_ok=True)
    codec.prepare()  # model loading is not encoding
    start = time.perf_counter()
    codec.encode(ref_y4m, bitstream, ignore)
    encode_s = time.perf_counter() - start
    decoded_y4m = bitstream.with_suffix(".decoded.y4m")
    start = time.perf_counter()
    codec.decode_to(bitstream, StreamHeader.of(ref), decoded_y4m, ignore)
    decode_s = time.perf_counter() - start
    decoded = read_y4m(decoded_y4m)
    per_frame = measure_quality(ref, decoded)
    size = bitstream.stat().st_size
    ms_ssim = statistics.fmean(f["ms_ssim"] for f in per_frame)
    return {
        "params": codec.params,
        "bytes": size,
        "bpp": size * 8 / (ref.width * ref.height * ref.frames),
        "psnr_yuv": statistics.fmean(f["psnr_yuv"] for f in per_frame),
        "psnr_y": statistics.fmean(f["psnr_y"] for f in per_frame),
        "ms_ssim": ms_ssim,
        "ms_ssim_db": ms_ssim_db(ms_ssim),
        "encode_fps": ref.frames / encode_s,
        "decode_fps": ref.frames / decode_s,
        "device": codec.device,
    }


def bd_figures(points: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | str]]:
    """BD-rate (PSNR-YUV and MS-SSIM dB) and BD-PSNR of every family against the anchor."""
    return {label: bd_against(points, ANCHOR, label) for label in points}


def bd_against(points: dict[str, list[dict[str, Any]]], anchor: str, label: str) -> dict[str, float | str]:
    """One family's BD figures against another's, and the PSNR-YUV range both cover."""

    def curve(name: str, metric: str) -> Curve:
        rows = points[name]
        return Curve(name, [r["bpp"] for r in rows], [r[metric] for r in rows])

    figures: dict[str, float | str] = {}
    for key, metric, function in (
        ("bd_rate_psnr_yuv", "psnr_yuv", bd_rate),
        ("bd_rate_ms_ssim", "ms_ssim_db", bd_rate),
        ("bd_psnr_yuv", "psnr_yuv", bd_quality),
    ):
        try:
            figures[key] = function(curve(anchor, metric), curve(label, metric))
        except BDError as exc:
            figures[key] = f"n/a: {exc}"
    anchor_psnr, psnr = curve(anchor, "psnr_yuv").qualities, curve(label, "psnr_yuv").qualities
    # BD figures average over the quality range both curves cover; say how wide that is
    low, high = max(min(anchor_psnr), min(psnr)), min(max(anchor_psnr), max(psnr))
    figures["psnr_overlap"] = f"{low:.1f}-{high:.1f}" if high > low else f"none ({high:.1f} < {low:.1f})"
    figures["psnr_overlap_db"] = round(max(0.0, high - low), 2)
    return figures


# Issue 19's targets: (what, the anchor it is measured against, the most BD-rate that meets it)
TARGETS = (
    ("BD-rate against x264 all-intra", ANCHOR, 0.0),
    ("BD-rate against its own all-intra mode", LEARNED_INTRA, -30.0),
    ("gap to x264 medium", "x264", None),
    ("gap to x265 medium", "x265", None),
)
MIN_OVERLAP_DB = 2.0
TOP_PSNR_DB = 34.0  # the top quality on BBB, PSNR-YUV


def learned_targets(clips: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target on each clip: the figure, the overlap it averages over, and whether it is met."""
    rows = []
    for label, clip in clips.items():
        for what, anchor, most in TARGETS:
            if what.startswith("BD-rate against its own") and not label.startswith("carphone"):
                continue  # the issue sets this one on carphone
            figures = bd_against(clip["points"], anchor, LEARNED)
            value = figures["bd_rate_psnr_yuv"]
            met = None if most is None else isinstance(value, float) and value <= most
            if met and most == 0.0:
                met = bool(value < 0 and float(figures["psnr_overlap_db"]) >= MIN_OVERLAP_DB)
            rows.append({"clip": label, "target": what, "anchor": anchor, "bd_rate_psnr_yuv": value,
                         "psnr_overlap": figures["psnr_overlap"], "met": met})  # fmt: skip
        if label.startswith("bbb"):
            top = max(point["psnr_yuv"] for point in clip["points"][LEARNED])
            rows.append({"clip": label, "target": f"top quality >= {TOP_PSNR_DB:g} dB PSNR-YUV", "anchor": "",
                         "bd_rate_psnr_yuv": round(top, 2), "psnr_overlap": "", "met": top >= TOP_PSNR_DB})  # fmt: skip
    return rows


def print_targets(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="The learned codec's targets (PSNR-YUV, PCHIP; 'gap' rows have no target, only the figure)")
    for name in ("clip", "target", "figure", "PSNR overlap dB", "met"):
        table.add_column(name, justify="left" if name in ("clip", "target") else "right")
    for row in rows:
        value = row["bd_rate_psnr_yuv"]
        figure = f"{value:.2f} dB" if row["target"].startswith("top") else _pct(value)
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        table.add_row(row["clip"], row["target"], figure, row["psnr_overlap"], met)
    console.print(table)


def run_clip(label: str, source: dict[str, Any], workdir: Path, progress: Progress) -> dict[str, Any]:
    clip_dir = workdir / label.split()[0]
    clip_dir.mkdir()
    ref_y4m = clip_dir / "reference.y4m"
    ref = Video.of(load_reference(source, clip_dir, ref_y4m).video)
    task = progress.add_task(label, total=sum(len(f.values) for f in FAMILIES))
    points: dict[str, list[dict[str, Any]]] = {}
    for family in FAMILIES:
        for value in family.values:
            progress.update(task, description=f"{label}: {family.label} {family.knob}={value}")
            params = {**family.fixed, family.knob: value}
            points.setdefault(family.label, []).append(code_point(family.codec, params, ref, ref_y4m, clip_dir))
            progress.advance(task)
    return {"source": source, "frames": ref.frames, "size": [ref.width, ref.height], "points": points}


def learned_speed_720p(workdir: Path) -> dict[str, Any]:
    speed_dir = workdir / "speed720"
    speed_dir.mkdir()
    ref_y4m = speed_dir / "reference.y4m"
    ref = Video.of(load_reference(SPEED_720P, speed_dir, ref_y4m).video)
    rows = {}
    for quality in (1, 6):
        point = code_point("learned", {"quality": quality, "device": "cpu", "threads": 2}, ref, ref_y4m, speed_dir)
        rows[f"q{quality}"] = {k: point[k] for k in ("bpp", "psnr_yuv", "encode_fps", "decode_fps")}
    return {"source": SPEED_720P, "size": [ref.width, ref.height], "rows": rows}


def conditions() -> dict[str, Any]:
    libs = library_versions()
    return {
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores usable",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ffmpeg": libs["ffmpeg"],
        "threads": "classical codecs threads=1; learned torch threads=2 on the CPU",
        "learned": "intra_period 32 (the default: an I-frame, then P-frames) and intra_period 1 (all-intra)",
        "rate": "bpp = 8 * bitstream bytes / (width * height * frames), container overhead included",
        "quality": "PSNR-YUV = (6Y+U+V)/8 and MS-SSIM-Y, per frame, mean over frames (codeclab metrics)",
        "bd": f"PCHIP (bjontegaard package), bpp against PSNR-YUV or MS-SSIM dB, anchor {ANCHOR}",
    }


def print_clip(console: Console, label: str, clip: dict[str, Any], bd: dict[str, dict[str, float | str]]) -> None:
    table = Table(title=f"RD on {label}, {clip['frames']} frames (BD against {ANCHOR}, PCHIP)")
    for name in ("codec", "setting", "bpp", "PSNR-YUV", "MS-SSIM", "enc fps", "dec fps"):
        table.add_column(name, justify="left" if name in ("codec", "setting") else "right")
    for column in ("BD-rate PSNR", "BD-rate MS-SSIM", "BD-PSNR", "PSNR overlap dB"):
        table.add_column(column, justify="right")
    for family in FAMILIES:
        rows = clip["points"][family.label]
        figures = bd[family.label]
        for index, row in enumerate(rows):
            first = index == 0
            table.add_row(
                family.label if first else "",
                f"{family.knob}={row['params'][family.knob]}",
                f"{row['bpp']:.3f}",
                f"{row['psnr_yuv']:.2f}",
                f"{row['ms_ssim']:.4f}",
                f"{row['encode_fps']:.1f}",
                f"{row['decode_fps']:.1f}",
                *(
                    _pct(figures["bd_rate_psnr_yuv"]),
                    _pct(figures["bd_rate_ms_ssim"]),
                    _db(figures["bd_psnr_yuv"]),
                    str(figures["psnr_overlap"]),
                )
                if first
                else ("", "", "", ""),
            )
        table.add_section()
    console.print(table)


def _pct(value: float | str) -> str:
    return f"{value:+.1f}%" if isinstance(value, float) else "n/a"


def _db(value: float | str) -> str:
    return f"{value:+.2f} dB" if isinstance(value, float) else "n/a"


def plot_clip(label: str, clip: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for family in FAMILIES:
        rows = clip["points"][family.label]
        style = {"linewidth": 2.5, "color": "black"} if family.label == LEARNED else {}
        for axis, metric in zip(axes, ("psnr_yuv", "ms_ssim_db"), strict=True):
            axis.plot([r["bpp"] for r in rows], [r[metric] for r in rows], marker="o", label=family.label, **style)
    axes[0].set_ylabel("PSNR-YUV (dB)")
    axes[1].set_ylabel("MS-SSIM-Y (dB, -10 log10(1-MS-SSIM))")
    for axis in axes:
        axis.set_xlabel("bits per pixel")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{label}, {clip['frames']} frames: learned codec against the anchors")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"where JSON and PNGs go ({RESULTS_DIR})")
    args = parser.parse_args(argv)
    console = Console(width=max(140, Console().width))
    results: dict[str, Any] = {"conditions": conditions(), "clips": {}}
    with tempfile.TemporaryDirectory(prefix="codeclab-rd-") as tmp:
        columns = (TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            for label, source in CLIPS.items():
                results["clips"][label] = run_clip(label, source, Path(tmp), progress)
            results["learned_720p"] = learned_speed_720p(Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    for label, clip in results["clips"].items():
        clip["bd"] = bd_figures(clip["points"])
        print_clip(console, label, clip, clip["bd"])
        png = args.out / f"rd_{label.split()[0]}.png"
        plot_clip(label, clip, png)
        console.print(f"  plot: {png}")
    results["targets"] = learned_targets(results["clips"])
    print_targets(console, results["targets"])
    speed = results["learned_720p"]
    for name, row in speed["rows"].items():
        console.print(
            f"learned {name} at {speed['size'][0]}x{speed['size'][1]} on the CPU: "
            f"encode {row['encode_fps']:.2f} fps, decode {row['decode_fps']:.2f} fps ({row['bpp']:.3f} bpp)"
        )
    results["run"] = run_stamp()  # stamped when written: the summary checks it against the run it summarizes
    (args.out / "bench_rd.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"figures: {args.out / 'bench_rd.json'}")


if __name__ == "__main__":
    main()

"""`codeclab report` over a test set: per-sequence curves, the BD table with class and overall averages, flags,
duplicates, and the files, on real runs/ folders of sweeps whose points are results.json of the project's types.

The reference for every BD figure is the `bjontegaard` package itself, fed the rates and qualities read back
from the points' own result.json files.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import re
import statistics
from pathlib import Path
from typing import Any

import bjontegaard
import pytest
from click.testing import CliRunner

from codeclab.cli import cli
from codeclab.experiments.record import ExperimentRecord
from codeclab.experiments.result import Conditions, Environment, Metrics, Result, SourceConditions
from codeclab.experiments.schema import SpecDocument
from codeclab.experiments.state import MANIFEST_FILE, ManifestPoint
from codeclab.local.runs import RESULT_FILE, RunsFolder

RATES = {22: 0.40, 27: 0.20, 32: 0.10, 37: 0.05}  # crf -> bpp of x264 on a sequence of scale 1
X264_PSNR_Y = {22: 41.0, 27: 38.0, 32: 35.0, 37: 32.0}
# sequence -> (class, its bpp scale, x265's bits against x264's, x265's PSNR-Y change at each crf)
SEQUENCES: dict[str, tuple[str, float, float, tuple[float, ...]]] = {
    "BQMall": ("C", 1.0, 0.70, (0.1, 0.0, -0.1, 0.2)),
    "PartyScene": ("C", 1.6, 0.80, (-0.2, 0.1, 0.0, 0.1)),
    "BasketballDrive": ("B", 0.5, 0.75, (0.3, 0.2, 0.1, 0.0)),
    "Cactus": ("B", 0.7, 0.85, (0.0, -0.1, 0.2, 0.1)),
}
QUALITY_METRICS = ("psnr_y", "psnr_yuv", "ms_ssim", "ssim", "vmaf")
SWEEPS = {"x264": "exp_x264set", "x265": "exp_x265set"}
ENVIRONMENT: Environment = {
    "codeclab": "0.1.0",
    "python": "3.11.7",
    "platform": "Linux-x86_64",
    "ffmpeg": {"libavcodec": "63.1.102", "ffmpeg": "n9.0.2-17-g2a571b6068-20260930"},
    "packages": {"numpy": "2.4.6", "opencv-python-headless": "5.0.0.93"},
}


def metrics(bpp: float, psnr_y: float) -> Metrics:
    """Every quality figure rises with PSNR-Y, so each metric's curve is monotonic."""
    psnr_u, psnr_v = psnr_y + 4.0, psnr_y + 4.5
    return {
        "psnr_y": psnr_y, "psnr_u": psnr_u, "psnr_v": psnr_v, "psnr_yuv": (6 * psnr_y + psnr_u + psnr_v) / 8,
        "ssim": 1 - 10 ** (-psnr_y / 15), "ms_ssim": 1 - 10 ** (-psnr_y / 20), "vmaf": psnr_y * 2.2,
        "bpp": bpp, "kbps": bpp * 1200, "compression_ratio": 12 / bpp, "encode_fps": 100.0, "decode_fps": 400.0,
    }  # fmt: skip


def result(sequence: str, codec: str, crf: int, bpp: float, psnr_y: float, clip: str | None = None) -> Result:
    class_name = SEQUENCES.get(sequence, ("B",))[0]
    spec: SpecDocument = {
        "name": f"{sequence}-{codec}-crf-{crf}",
        "source": {"clip": clip or f"s3://clips/{sequence}_832x480.y4m", "start": 0, "frames": 8},
        "codec": {"name": codec, "params": {"crf": crf, "preset": "medium", "threads": 1}},
        "limits": {"timeout_seconds": 900, "stall_seconds": 120},
        "metrics": {"vmaf": "auto"},
    }
    source: SourceConditions = {
        "clip": spec["source"]["clip"], "file": f"{sequence}.y4m",
        "sha256": hashlib.sha256(sequence.encode()).hexdigest(),
        "source_size": [832, 480], "source_pix_fmt": "yuv420p", "source_fps": "60", "start": 0, "frames": 8,
        "crop": None, "size": [832, 480], "scaling": "none", "fps": "60", "pix_fmt": "yuv420p",
        "colour_handling": "source yuv420p planes used as decoded; no colour conversion",
    }  # fmt: skip
    conditions: Conditions = {
        # the shared contract's fields, recorded by the worker
        "source": {**source, "sequence": sequence, "class": class_name, "bit_depth": 8},
        "codec": {"codec": codec, "implementation": f"lib{codec} in ffmpeg n9.0.2", "params": spec["codec"]["params"]},
        "metrics": {name: f"the {name} definition" for name in ("psnr", "psnr_yuv", "ssim", "ms_ssim", "vmaf")},
        "rate": "bitstream bytes on disk; bpp = 8*bytes/(width*height*frames)",
    }
    return {
        "schema_version": 1,
        "status": "SUCCEEDED",
        "name": spec["name"],
        "spec": spec,
        "conditions": conditions,
        "metrics": metrics(bpp, psnr_y),
        "bitstream": {"file": "bitstream", "bytes": round(bpp * 832 * 480 * 8 / 8)},
        "frames": 8,
        "timings": {"encode_s": 0.1, "total_s": 0.5},
        "resources": {"device": "cpu", "peak_rss_mb_worker": 100.0, "peak_rss_mb_children": 50.0},
        "environment": copy.deepcopy(ENVIRONMENT),
    }


def curve_points(sequence: str, codec: str) -> dict[int, tuple[float, float]]:
    """crf -> (bpp, PSNR-Y) of one codec on one of SEQUENCES."""
    _, scale, x265_bits, x265_psnr = SEQUENCES[sequence]
    if codec == "x264":
        return {crf: (scale * RATES[crf], X264_PSNR_Y[crf]) for crf in RATES}
    return {
        crf: (scale * RATES[crf] * x265_bits, X264_PSNR_Y[crf] + delta)
        for (crf, delta) in zip(RATES, x265_psnr, strict=True)
    }


def write_point(runs: Path, experiment_id: str, point: Result, parent_id: str | None = None) -> None:
    record: ExperimentRecord = {
        "experiment_id": experiment_id,
        "timestamp": 1_790_000_000_000,
        "status": "SUCCEEDED",
        "spec": point["spec"],
        "history": [{"status": "SUCCEEDED", "at": 1_790_000_000_000}],
        "updated_at": 1_790_000_000_000,
        "codec": point["spec"]["codec"]["name"],
        "conditions": point["conditions"],
    }
    if parent_id:
        record["parent_id"] = parent_id
    RunsFolder(runs).save_record(record)
    (runs / experiment_id / RESULT_FILE).write_text(json.dumps(point))


def write_sweep(runs: Path, parent_id: str, points: dict[str, Result]) -> None:
    """A sweep whose points are the given results, by point id: its record and its manifest (points.json)."""
    manifest: list[ManifestPoint] = []
    for index, (experiment_id, point) in enumerate(points.items()):
        write_point(runs, experiment_id, point, parent_id)
        label = f"{point['spec']['codec']['name']} crf={point['spec']['codec']['params']['crf']}"
        manifest.append({"parent_id": parent_id, "execution_arn": "", "experiment_id": experiment_id,
                         "index": index, "label": label, "spec": point["spec"]})  # fmt: skip
    parent: ExperimentRecord = {
        "experiment_id": parent_id,
        "timestamp": 1_790_000_000_000,
        "status": "SUCCEEDED",
        "spec": {"name": parent_id},
        "history": [],
        "updated_at": 1_790_000_000_000,
        "codec": "sweep",
        "point_count": len(manifest),
        "manifest_uri": f"s3://bucket/experiments/{parent_id}/{MANIFEST_FILE}",
    }
    RunsFolder(runs).save_record(parent)
    (runs / parent_id / MANIFEST_FILE).write_text(json.dumps(manifest))


def codec_sweep(codec: str, sequences: dict[str, dict[int, tuple[float, float]]]) -> dict[str, Result]:
    return {
        f"{SWEEPS[codec]}_{sequence}_{crf}": result(sequence, codec, crf, bpp, psnr)
        for sequence, points in sequences.items()
        for crf, (bpp, psnr) in points.items()
    }


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two sweeps, x264 and x265, each over the four sequences of two classes at four CRFs."""
    runs = tmp_path / "runs"
    for codec in SWEEPS:
        write_sweep(runs, SWEEPS[codec], codec_sweep(codec, {s: curve_points(s, codec) for s in SEQUENCES}))
    return runs


def report(runs: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["report", *args, "--runs-dir", str(runs), "--out", str(runs / "out")])


def bd_csv(runs: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((runs / "out" / "bd.csv").read_text().splitlines()))


def row(rows: list[dict[str, str]], sequence: str, metric: str) -> dict[str, str]:
    (found,) = [r for r in rows if r["sequence"] == sequence and r["metric"] == metric]
    return found


def reference(runs: Path, sequence: str, metric: str, delta: Any = bjontegaard.bd_rate) -> float:
    """The package's own figure for x265 against x264 on a sequence, from the points' result.json files."""
    curves: dict[str, list[tuple[float, float]]] = {"x264": [], "x265": []}
    for path in sorted(runs.glob(f"exp_*_{sequence}_*/{RESULT_FILE}")):
        point = json.loads(path.read_text())
        curves[point["spec"]["codec"]["name"]].append((point["metrics"]["bpp"], point["metrics"][metric]))
    (anchor_rates, anchor_q), (test_rates, test_q) = (zip(*sorted(curves[c]), strict=True) for c in curves)
    return float(
        delta(anchor_rates, anchor_q, test_rates, test_q, method="pchip", require_matching_points=False, min_overlap=0)
    )


# -- per sequence, per class, on average --------------------------------------------------------
def test_per_sequence_bd_figures_are_the_bjontegaard_packages_in_every_metric(runs: Path) -> None:
    out = report(runs, *SWEEPS.values())
    assert out.exit_code == 0, out.output
    rows = bd_csv(runs)
    for sequence in SEQUENCES:
        for metric in QUALITY_METRICS:
            found = row(rows, sequence, metric)
            assert float(found["bd_rate_percent"]) == pytest.approx(reference(runs, sequence, metric), abs=1e-9)
            quality = reference(runs, sequence, metric, bjontegaard.bd_psnr)
            assert float(found["bd_quality"]) == pytest.approx(quality, abs=1e-9)
            assert (found["curve"], found["anchor"], found["class"]) == (
                "x265 preset=medium",
                "x264 preset=medium",
                SEQUENCES[sequence][0],
            )
            assert (found["points"], found["bd_rate_sequences"], found["note"]) == ("4", "1", "")
    assert float(row(rows, "BQMall", "psnr_y")["bd_rate_percent"]) < 0  # x265 needs fewer bits here


def test_averages_are_over_all_sequences_and_over_each_class(runs: Path) -> None:
    out = report(runs, *SWEEPS.values())
    rows = bd_csv(runs)
    for metric in QUALITY_METRICS:
        figures = {s: reference(runs, s, metric) for s in SEQUENCES}
        average = row(rows, "average", metric)
        assert float(average["bd_rate_percent"]) == pytest.approx(statistics.fmean(figures.values()), abs=1e-9)
        assert (average["bd_rate_sequences"], average["note"]) == ("4", "over 4 of 4 sequences")
        for class_name in ("B", "C"):
            members = [figures[s] for s, (c, *_) in SEQUENCES.items() if c == class_name]
            class_row = row(rows, f"class:{class_name}", metric)
            assert float(class_row["bd_rate_percent"]) == pytest.approx(statistics.fmean(members), abs=1e-9)
            assert (class_row["class"], class_row["bd_rate_sequences"]) == (class_name, "2")
    mean = statistics.fmean(reference(runs, s, "psnr_yuv") for s in SEQUENCES)
    assert f"{mean:+.2f} (4/4)" in out.output  # the terminal table's average, with what it was taken over


def test_bd_csv_has_a_row_per_sequence_class_and_average_for_each_metric(runs: Path) -> None:
    report(runs, *SWEEPS.values())
    rows = bd_csv(runs)
    assert list(rows[0]) == [
        "sequence", "class", "curve", "anchor", "metric", "points", "bd_rate_percent", "bd_quality", "quality_unit",
        "bd_rate_sequences", "bd_quality_sequences", "note",
    ]  # fmt: skip
    names = ["BasketballDrive", "BQMall", "Cactus", "PartyScene", "class:B", "class:C", "average"]
    assert [(r["sequence"], r["metric"]) for r in rows] == [(n, m) for m in QUALITY_METRICS for n in names]
    assert {r["quality_unit"] for r in rows if r["metric"].startswith("psnr")} == {"dB"}


# -- flags ------------------------------------------------------------------------------------------
FLAGGED = {  # sequence -> its x265 points, and the reason the report gives
    "Kimono": (
        {22: (0.9, 47.0), 27: (0.6, 44.0), 32: (0.45, 41.5), 37: (0.35, 39.0)},
        "overlap in only",
    ),
    "Tennis": (
        {22: (0.28, 41.0), 27: (0.14, 36.0), 32: (0.07, 37.0), 37: (0.035, 32.0)},
        "not monotonic",
    ),
    "Cafe": ({22: (0.28, 41.0), 27: (0.14, 38.0), 32: (0.07, 35.0)}, "3 rate points; a BD figure needs at least 4"),
}


@pytest.mark.filterwarnings("error")  # neither scipy nor anything else may warn on unusable curves
def test_sequences_without_a_usable_figure_are_flagged_with_the_reason_and_left_out_of_averages(
    runs: Path,
) -> None:
    base = {22: (0.40, 41.0), 27: (0.20, 38.0), 32: (0.10, 35.0), 37: (0.05, 32.0)}
    write_sweep(
        runs, "exp_x264more", {f"exp_x264more_{s}_{c}": result(s, "x264", c, *base[c]) for s in FLAGGED for c in base}
    )
    x265 = {f"exp_x265more_{s}_{c}": result(s, "x265", c, *p) for s, (ps, _) in FLAGGED.items() for c, p in ps.items()}
    write_sweep(runs, "exp_x265more", x265)
    out = report(runs, *SWEEPS.values(), "exp_x264more", "exp_x265more")
    assert out.exit_code == 0, out.output
    rows = bd_csv(runs)
    for sequence, (_, reason) in FLAGGED.items():
        flagged = row(rows, sequence, "psnr_y")
        assert flagged["bd_rate_percent"] == "n/a" and flagged["bd_rate_sequences"] == "0"
        assert reason in flagged["note"], flagged["note"]
        assert reason in out.output
    assert (
        "(quality 39..47) and x264 preset=medium (quality 32..41) overlap in only 25%"
        in row(rows, "Kimono", "psnr_y")["note"]
    )
    average = row(rows, "average", "psnr_y")
    assert average["bd_rate_sequences"] == "4"  # the four good sequences of the fixture, not the three flagged
    assert average["note"] == "over 4 of 7 sequences (left out: Cafe, Kimono, Tennis)"
    good = statistics.fmean(reference(runs, s, "psnr_y") for s in SEQUENCES)
    assert float(average["bd_rate_percent"]) == pytest.approx(good, abs=1e-9)
    assert row(rows, "class:B", "psnr_y")["note"] == "over 2 of 5 sequences (left out: Cafe, Kimono, Tennis)"
    assert "nan" not in (runs / "out" / "bd.csv").read_text().lower()
    assert "Warning" not in out.output


def test_a_sequence_the_anchor_did_not_run_is_flagged(runs: Path) -> None:
    write_sweep(
        runs, "exp_extra", {f"exp_extra_Vidyo_{c}": result("Vidyo", "x265", c, RATES[c], 40.0 - c / 10) for c in RATES}
    )
    out = report(runs, *SWEEPS.values(), "exp_extra")
    assert out.exit_code == 0, out.output
    assert row(bd_csv(runs), "Vidyo", "psnr_y")["note"] == "n/a: the anchor has no points on Vidyo"


# -- duplicates and conditions ---------------------------------------------------------------------
def rerun(runs: Path, parent_id: str, sequence: str, crfs: list[int], **changes: Any) -> None:
    """A second x264 sweep with BQMall's numbers on `sequence` at some CRFs; `changes` edits its results."""
    points = {}
    for crf in crfs:
        point = result(sequence, "x264", crf, *curve_points("BQMall", "x264")[crf])
        point["metrics"]["encode_fps"] = 123.0  # speed differs run to run and does not make a conflict
        point["spec"]["codec"]["params"]["threads"] = 2
        for path, value in changes.items():
            *parents, leaf = path.split(".")
            target: Any = point
            for key in parents:
                target = target[key]
            target[leaf] = value
        points[f"{parent_id}_{crf}"] = point
    write_sweep(runs, parent_id, points)


def test_identical_points_of_two_sweeps_are_kept_once(runs: Path) -> None:
    rerun(runs, "exp_again", "BQMall", [27, 32])
    out = report(runs, *SWEEPS.values(), "exp_again")
    assert out.exit_code == 0, out.output
    assert "dropped exp_again_27: the same point as exp_x264set_BQMall_27, same numbers" in out.output
    bq = row(bd_csv(runs), "BQMall", "psnr_y")
    assert bq["points"] == "4" and float(bq["bd_rate_percent"]) == pytest.approx(reference(runs, "BQMall", "psnr_y"))
    document = json.loads((runs / "out" / "report.json").read_text())
    assert document["duplicates"] == [
        {"experiment_id": "exp_again_27", "same_as": "exp_x264set_BQMall_27"},
        {"experiment_id": "exp_again_32", "same_as": "exp_x264set_BQMall_32"},
    ]


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ({"metrics.psnr_y": 38.01}, "metrics.psnr_y: 38.0 (exp_x264set_BQMall_27) vs 38.01 (exp_again_27)"),
        ({"environment.ffmpeg": {"ffmpeg": "n7.1"}}, "environment.ffmpeg: n9.0.2-17-g2a571b6068-20260930"),
    ],
)
def test_a_point_measured_twice_differently_is_refused_with_both_ids(
    runs: Path, change: dict[str, Any], difference: str
) -> None:
    rerun(runs, "exp_again", "BQMall", [27], **change)
    out = report(runs, *SWEEPS.values(), "exp_again", "--allow-mismatch")
    assert out.exit_code == 2
    assert (
        "exp_x264set_BQMall_27 and exp_again_27 measured the same point "
        "(sequence BQMall, curve 'x264 preset=medium', crf=27) differently" in out.output
    )
    assert difference in out.output and "leave one of them (or its sweep) out of the ids" in out.output
    assert not (runs / "out").exists()


def test_another_clip_is_another_sequence_but_another_ffmpeg_is_still_a_mismatch(runs: Path) -> None:
    assert "CONDITIONS DIFFER" not in report(runs, *SWEEPS.values()).output
    rerun(runs, "exp_newer", "Vidyo", list(RATES), **{"environment.ffmpeg": {"ffmpeg": "n7.1"}})
    out = report(runs, *SWEEPS.values(), "exp_newer")
    assert out.exit_code == 2
    said = " ".join(out.output.split())  # the terminal wraps long lines
    assert "environment.ffmpeg: n9.0.2-17-g2a571b6068-20260930 (exp_x264set_BQMall_22," in said
    assert "vs n7.1 (exp_newer_22, exp_newer_27, exp_newer_32, exp_newer_37)" in said


def test_a_10bit_sequence_beside_8bit_ones_pins_its_definitions_among_10bit_points(runs: Path) -> None:
    ten_bit = {"conditions.source.bit_depth": 10, "conditions.metrics": {"psnr": "10*log10(1023^2/MSE)"}}
    rerun(runs, "exp_tenbit", "Vidyo", list(RATES), **ten_bit)
    out = report(runs, *SWEEPS.values(), "exp_tenbit")
    assert out.exit_code == 0 and "CONDITIONS DIFFER" not in out.output, out.output
    rerun(runs, "exp_tenbit_other", "Kimono", list(RATES), **{**ten_bit, "conditions.rate": "another rate"})
    out = report(runs, *SWEEPS.values(), "exp_tenbit", "exp_tenbit_other")
    said = " ".join(out.output.split())
    assert out.exit_code == 2 and "rate within 10-bit sequences:" in said and "(exp_tenbit_other_22," in said


def test_one_sequence_name_on_two_clips_is_a_mismatch_within_the_sequence(runs: Path) -> None:
    # crf 26 is another point than the first sweep's, so not a duplicate: a second clip named BQMall
    rerun(runs, "exp_other", "BQMall", [27], **{"conditions.source.sha256": "f" * 64, "spec.codec.params.crf": 26})
    out = report(runs, *SWEEPS.values(), "exp_other")
    assert out.exit_code == 2
    assert "source.sha256 within sequence 'BQMall':" in out.output and "(exp_other_27)" in out.output


def test_results_without_a_sequence_fall_back_to_the_clip_stem_and_no_class(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for codec in SWEEPS:
        points = {}
        for crf, (bpp, psnr) in curve_points("BQMall", codec).items():
            point = result("BQMall", codec, crf, bpp, psnr, clip="s3://clips/BQMall_832x480_60.yuv")
            source: dict[str, Any] = point["conditions"]["source"]  # type: ignore[assignment]
            for written_later in ("sequence", "class", "bit_depth"):
                del source[written_later]
            points[f"{SWEEPS[codec]}_{crf}"] = point
        write_sweep(runs, SWEEPS[codec], points)
    out = report(runs, *SWEEPS.values())
    assert out.exit_code == 0, out.output
    (found,) = [r for r in bd_csv(runs) if r["metric"] == "psnr_y"]
    assert (found["sequence"], found["class"]) == ("BQMall_832x480_60", "")


# -- the anchor ------------------------------------------------------------------------------------
def test_the_anchor_is_the_first_ids_curve_or_the_one_named(runs: Path) -> None:
    report(runs, *SWEEPS.values(), "--anchor", "x265")
    rows = bd_csv(runs)
    assert {(r["curve"], r["anchor"]) for r in rows} == {("x264 preset=medium", "x265 preset=medium")}
    assert float(row(rows, "BQMall", "psnr_y")["bd_rate_percent"]) > 0
    out = report(runs, *SWEEPS.values(), "--anchor", "av1")
    assert out.exit_code == 2
    assert "--anchor av1 names none of the curves ('x264 preset=medium', 'x265 preset=medium')" in out.output


# -- the page and the plots ------------------------------------------------------------------------
def test_the_page_has_a_panel_per_sequence_and_a_summary_sortable_by_column(runs: Path) -> None:
    out = report(runs, *SWEEPS.values(), "--log-rate", "--metric", "vmaf")
    assert out.exit_code == 0, out.output
    page = (runs / "out" / "rd.html").read_text()
    assert not re.search(r"https?://", page) and not re.search(r"<(script|link|img)[^>]*(src|href)=", page)
    captions = re.findall(r'<figure class="panel"><figcaption>([^<]*)</figcaption>', page)
    assert [c.split(":")[0] for c in captions] == [
        "BasketballDrive (class B)", "BQMall (class C)", "Cactus (class B)", "PartyScene (class C)",
    ]  # fmt: skip
    assert page.count('<g class="curve"') == 8
    summary = page[page.index("<caption>Bjøntegaard deltas") :].split("</table>")[0]
    assert '<table class="sortable">' in page[: page.index("<caption>Bjøntegaard deltas")][-40:]
    for heading in ("BD-rate PSNR-Y (%)", "BD-rate VMAF (%)", "BD-PSNR-YUV (dB)", "BD-MS-SSIM"):
        assert f'<th title="click to sort">{heading}</th>' in summary
    bq = reference(runs, "BQMall", "psnr_y")
    assert f"<td>BQMall</td><td>C</td><td>x265 preset=medium</td><td>4</td><td>{bq:+.2f}</td>" in summary
    assert "<td>average</td>" in summary and "<td>class:B</td>" in summary
    assert "function sortBy(table, th, column)" in page and 'th.addEventListener("click"' in page
    assert (runs / "out" / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ticks = re.findall(r'text-anchor="middle">([0-9.]+)</text>', page)
    assert {"0.05", "0.1", "0.2"} <= set(ticks)
    assert {f"{float(t):.0e}"[0] for t in ticks} <= set("125")  # a log axis: 1, 2 and 5 times powers of ten

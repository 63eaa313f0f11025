"""`codeclab report` on synthetic runs/ folders: loading, curves, anchors, BD table, pinned conditions, outputs."""

from __future__ import annotations

import copy
import csv
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codeclab.cli import cli
from codeclab.report.bd import Curve, bd_quality, bd_rate
from codeclab.report.conditions import condition_differences, differing_fields
from codeclab.report.curves import METRICS
from codeclab.report.plots import Plot, png_figure
from codeclab.report.report import build_report
from codeclab.report.runs import ReportError, load_experiments
from codeclab.report.sequences import SequenceId

# The shape of a real worker result.json (runs/demo-*/jpeg/result.json), trimmed of what the report ignores.
BASE_RESULT: dict[str, Any] = {
    "schema_version": 1,
    "status": "SUCCEEDED",
    "name": "synthetic",
    "spec": {"name": "synthetic", "source": {"clip": "builtin:carphone", "frames": 32, "start": 0}, "codec": {}},
    "conditions": {
        "source": {
            "clip": "builtin:carphone",
            "file": "carphone_pristine.mp4",
            "sha256": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
            "source_size": [176, 144],
            "source_pix_fmt": "yuv420p",
            "source_fps": "30000/1001",
            "start": 0,
            "frames": 32,
            "crop": None,
            "size": [176, 144],
            "scaling": "none",
            "fps": "30000/1001",
            "pix_fmt": "yuv420p",
            "colour_handling": "source yuv420p planes used as decoded; no colour conversion",
        },
        "codec": {},
        "metrics": {
            "psnr": "per-frame MSE on 8-bit planes, 10*log10(255^2/MSE), capped at 100 dB",
            "psnr_yuv": "(6*Y+U+V)/8 of the per-frame plane PSNRs; clip value = mean over frames",
            "ssim": "Wang 2004 on Y: Gaussian window 11x11 sigma 1.5",
            "ms_ssim": "Wang 2003 on Y: weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)",
            "vmaf": "libvmaf via ffmpeg's libvmaf filter, built-in model vmaf_v0.6.1",
            "vmaf_version": "libvmaf 86da14d, model vmaf_v0.6.1",
        },
        "rate": "bitstream bytes on disk; bpp = 8*bytes/(width*height*frames)",
    },
    "metrics": {},
    "bitstream": {"file": "bitstream", "bytes": 0},
    "frames": 32,
    "timings": {"encode_s": 0.1, "decode_s": 0.05, "total_s": 0.5},
    "resources": {"device": "cpu"},
    "environment": {
        "codeclab": "0.1.0",
        "python": "3.11.7",
        "ffmpeg": {"libavcodec": "63.1.102", "ffmpeg": "n9.0.2-17-g2a571b6068-20260930"},
        "packages": {"numpy": "2.4.6", "opencv-python-headless": "5.0.0.93"},
    },
}
CODEC_CONDITIONS = {
    "x264": {"codec": "x264", "implementation": "libx264 in ffmpeg n9.0.2 (imageio-ffmpeg build)"},
    "jpeg": {
        "codec": "jpeg",
        "implementation": "libjpeg-turbo 3.1.2 via OpenCV 5.0.0",
        "colour_conversion": "BT.601 limited-range YCbCr <-> full-range RGB",
    },
}
# (bpp, PSNR-YUV) per rate point; the curves overlap in rate and in quality.
X264 = [(0.05, 32.0), (0.10, 35.0), (0.20, 38.0), (0.40, 41.0)]
X264_INTRA = [(0.10, 32.5), (0.20, 35.5), (0.40, 38.5), (0.80, 41.0)]
JPEG = [(0.30, 31.0), (0.60, 34.0), (1.20, 37.0), (2.40, 40.0)]


def result_json(codec: str, params: dict[str, Any], bpp: float, psnr: float, **changes: Any) -> dict[str, Any]:
    """A result.json for one rate point; `changes` maps dotted paths (conditions.source.frames) to new values."""
    result = copy.deepcopy(BASE_RESULT)
    result["spec"]["codec"] = {"name": codec, "params": params}
    result["conditions"]["codec"] = {**CODEC_CONDITIONS[codec], "params": params}
    result["metrics"] = {
        "psnr_y": psnr - 1, "psnr_u": psnr + 4, "psnr_v": psnr + 4, "psnr_yuv": psnr,
        "ssim": 0.9, "ms_ssim": 1 - 10 ** (-psnr / 20), "vmaf": psnr * 2.2,
        "bpp": bpp, "kbps": bpp * 760, "compression_ratio": 12 / bpp, "encode_fps": 400.0, "decode_fps": 900.0,
    }  # fmt: skip
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = result
        for key in parents:
            target = target[key]
        target[leaf] = value
    return result


def write_experiment(
    runs: Path, experiment_id: str, result: dict[str, Any] | None, status: str = "SUCCEEDED", **record: Any
) -> None:
    folder = runs / experiment_id
    folder.mkdir(parents=True)
    spec = (result or {}).get("spec") or {"name": "failed", "codec": {"name": "x264", "params": {"crf": 51}}}
    item = {"experiment_id": experiment_id, "timestamp": 1_790_000_000_000, "status": status, "spec": spec, **record}
    if result is not None:
        item |= {"codec": spec["codec"]["name"], "result": {"metrics": result["metrics"]}}
        item |= {"conditions": result["conditions"]}
        (folder / "result.json").write_text(json.dumps(result))
    (folder / "record.json").write_text(json.dumps(item))


def write_curve(runs: Path, prefix: str, codec: str, params: dict[str, Any], knob: str, points: list, **changes: Any):
    """One experiment per point, ids prefix0, prefix1, ...; returns the ids."""
    ids = []
    for index, (bpp, psnr) in enumerate(points):
        experiment_id = f"{prefix}{index}"
        write_experiment(runs, experiment_id, result_json(codec, {**params, knob: 20 + index}, bpp, psnr, **changes))
        ids.append(experiment_id)
    return ids


def write_sweep(runs: Path, parent_id: str, codec: str, params: dict, knob: str, points: list, extra=()) -> list[str]:
    """A sweep parent and its points; `extra` adds (id, status, write_folder) points that did not succeed."""
    children = write_curve(runs, f"{parent_id}_p", codec, params, knob, points)
    for child in children:
        record = json.loads((runs / child / "record.json").read_text())
        (runs / child / "record.json").write_text(json.dumps({**record, "parent_id": parent_id}))
    labels = [f"{codec} {knob}={20 + index}" for index in range(len(children))]
    for child, status, write_folder in extra:
        labels.append(f"{codec} {knob}=51")
        if write_folder:
            write_experiment(runs, child, None, status=status, parent_id=parent_id)
    ids = [*children, *(child for child, _, _ in extra)]
    manifest = [
        {"parent_id": parent_id, "execution_arn": "", "experiment_id": point, "index": i, "label": label, "spec": {}}
        for i, (point, label) in enumerate(zip(ids, labels, strict=True))
    ]
    uri = f"s3://bucket/experiments/{parent_id}/points.json"
    parent = {"experiment_id": parent_id, "timestamp": 1_790_000_000_000, "status": "SUCCEEDED",
              "point_count": len(manifest), "manifest_uri": uri}  # fmt: skip
    (runs / parent_id).mkdir()
    (runs / parent_id / "record.json").write_text(json.dumps(parent))
    (runs / parent_id / "points.json").write_text(json.dumps(manifest))
    return children


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """An x264 sweep with a failed and a still-running point, single x264 all-intra and jpeg experiments."""
    runs = tmp_path / "runs"
    write_sweep(
        runs, "exp_sweep", "x264", {"preset": "medium", "threads": 1}, "crf", X264,
        extra=[("exp_failed", "FAILED", True), ("exp_running", "RUNNING", False)],
    )  # fmt: skip
    write_curve(runs, "exp_intra", "x264", {"preset": "medium", "keyint": 1, "threads": 1}, "crf", X264_INTRA)
    write_curve(runs, "exp_jpeg", "jpeg", {}, "quality", JPEG)
    return runs


ONE_SEQUENCE = {"exp_a": "carphone", "exp_b": "carphone"}
ALL = ["exp_sweep", *(f"exp_intra{i}" for i in range(4)), *(f"exp_jpeg{i}" for i in range(4))]


def report_cli(runs: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["report", *args, "--runs-dir", str(runs)])


# -- loading ---------------------------------------------------------------------------------
def test_a_sweep_id_expands_to_its_points_and_keeps_the_unsuccessful_ones_marked(runs: Path) -> None:
    experiments = load_experiments(["exp_sweep", "exp_sweep_p0"], runs)
    assert [(e.experiment_id, e.status, e.requested_as) for e in experiments] == [
        ("exp_sweep_p0", "SUCCEEDED", "exp_sweep"),
        ("exp_sweep_p1", "SUCCEEDED", "exp_sweep"),
        ("exp_sweep_p2", "SUCCEEDED", "exp_sweep"),
        ("exp_sweep_p3", "SUCCEEDED", "exp_sweep"),
        ("exp_failed", "FAILED", "exp_sweep"),  # the point's own record
        ("exp_running", "NOT_STARTED", "exp_sweep"),  # in the manifest, with no record of its own
    ]
    assert all(e.result is None for e in experiments if not e.succeeded)


def test_the_report_says_which_sweep_points_it_skipped(runs: Path) -> None:
    out = report_cli(runs, *ALL)
    assert out.exit_code == 0, out.output
    assert "skipped exp_failed (x264 crf=51) of sweep exp_sweep: FAILED, not SUCCEEDED" in out.output
    assert "skipped exp_running (x264 crf=51) of sweep exp_sweep: NOT_STARTED" in out.output
    rows = list(csv.DictReader((runs / "reports" / "exp_sweep" / "report.csv").open()))
    assert [(r["experiment_id"], r["status"], r["bpp"]) for r in rows[-2:]] == [
        ("exp_failed", "FAILED", ""),
        ("exp_running", "NOT_STARTED", ""),
    ]


def test_an_unknown_id_names_the_id_the_runs_dir_and_how_to_list_ids(runs: Path) -> None:
    with pytest.raises(ReportError, match=rf"no experiment exp_nope in {re.escape(str(runs))} .*codeclab list"):
        load_experiments(["exp_nope"], runs)
    with pytest.raises(ReportError, match=r"no experiment \.\./etc"):
        load_experiments(["../etc"], runs)


def test_a_failed_experiment_named_directly_is_refused(runs: Path) -> None:
    with pytest.raises(ReportError, match="exp_failed is FAILED, not SUCCEEDED"):
        load_experiments(["exp_failed"], runs)


def test_a_sweep_point_without_its_folder_never_started_and_is_left_out(runs: Path) -> None:
    manifest = json.loads((runs / "exp_sweep" / "points.json").read_text())
    manifest.append({**manifest[0], "experiment_id": "exp_lost", "index": len(manifest), "label": "x264 crf=9"})
    (runs / "exp_sweep" / "points.json").write_text(json.dumps(manifest))
    lost = next(e for e in load_experiments(["exp_sweep"], runs) if e.experiment_id == "exp_lost")
    assert lost.status == "NOT_STARTED" and not lost.succeeded and lost.result is None


def test_a_sweep_without_its_manifest_is_an_error(runs: Path) -> None:
    (runs / "exp_sweep" / "points.json").unlink()
    with pytest.raises(ReportError, match=r"sweep exp_sweep has no .*points.json, which names its points"):
        load_experiments(["exp_sweep"], runs)


# -- curves and anchors ----------------------------------------------------------------------
def test_points_group_into_curves_labelled_by_codec_settings_without_the_rate_knob(runs: Path) -> None:
    shuffled = ["exp_sweep", "exp_intra2", "exp_intra0", "exp_intra3", "exp_intra1", *ALL[5:]]
    report = build_report(shuffled, runs, "psnr_yuv", None, allow_mismatch=False)
    assert [c.label for c in report.curves] == ["x264 preset=medium", "x264 keyint=1 preset=medium", "jpeg"]
    intra = report.curves[1]
    assert [p.bpp for p in intra.points] == [0.1, 0.2, 0.4, 0.8]
    assert [p.rate_params for p in intra.points] == ["crf=20", "crf=21", "crf=22", "crf=23"]
    assert report.anchor == "x264 preset=medium"  # the first id's curve


@pytest.mark.parametrize(
    ("anchor", "label"),
    [
        ("exp_intra2", "x264 keyint=1 preset=medium"),  # one point's id: its curve
        ("exp_sweep", "x264 preset=medium"),  # a sweep id
        ("jpeg", "jpeg"),  # a codec with one curve
        ("x264 keyint=1 preset=medium", "x264 keyint=1 preset=medium"),  # a full label
    ],
)
def test_the_anchor_is_an_id_a_codec_or_a_label(runs: Path, anchor: str, label: str) -> None:
    assert build_report(ALL, runs, "psnr_yuv", anchor, allow_mismatch=False).anchor == label


def test_an_anchor_codec_with_several_curves_is_an_error_listing_them(runs: Path) -> None:
    out = report_cli(runs, *ALL, "--anchor", "x264")
    assert out.exit_code == 2
    assert "--anchor x264 matches 2 curves: 'x264 preset=medium', 'x264 keyint=1 preset=medium'" in out.output
    assert "give one of their experiment ids or the full label" in out.output


def test_an_anchor_that_names_nothing_is_an_error(runs: Path) -> None:
    with pytest.raises(ReportError, match="--anchor av1 names none of the curves"):
        build_report(ALL, runs, "psnr_yuv", "av1", allow_mismatch=False)


def test_an_anchor_id_outside_the_ids_is_loaded_too(runs: Path) -> None:
    report = build_report(["exp_jpeg0", "exp_jpeg1", "exp_jpeg2", "exp_jpeg3"], runs, "psnr_yuv", "exp_sweep", False)
    assert report.anchor == "x264 preset=medium"
    assert [c.label for c in report.curves] == ["jpeg", "x264 preset=medium"]


# -- BD table --------------------------------------------------------------------------------
def test_the_bd_table_is_bd_rate_and_bd_quality_of_the_same_points_in_every_metric(runs: Path) -> None:
    report = build_report(ALL, runs, "psnr_yuv", None, allow_mismatch=False)
    assert [m.key for m in report.metrics] == ["psnr_y", "psnr_yuv", "ms_ssim", "ssim", "vmaf"]
    assert {row.sequence for row in report.bd} == {"carphone"}  # one sequence: no averages

    def curve(points: list, metric: str) -> Curve:
        return Curve("c", [b for b, _ in points], [result_json("x264", {}, b, q)["metrics"][metric] for b, q in points])

    for metric in ("psnr_yuv", "ms_ssim", "vmaf"):
        for label, points in (("x264 keyint=1 preset=medium", X264_INTRA), ("jpeg", JPEG)):
            (row,) = [r for r in report.bd if r.curve == label and r.metric.key == metric]
            assert row.bd_rate.value == pytest.approx(bd_rate(curve(X264, metric), curve(points, metric)), abs=1e-12)
    (row,) = [r for r in report.bd if r.curve == "x264 keyint=1 preset=medium" and r.metric.key == "psnr_yuv"]
    assert row.bd_quality.value == pytest.approx(bd_quality(curve(X264, "psnr_yuv"), curve(X264_INTRA, "psnr_yuv")))
    assert row.note == ""
    (ssim,) = [r for r in report.bd if r.curve == "jpeg" and r.metric.key == "ssim"]
    assert ssim.note == "n/a: c: two rate points coincide; each point must differ in rate and quality".replace(
        "c:", "x264 preset=medium:"
    )  # every synthetic point has SSIM 0.9


def test_bd_csv_and_json_carry_the_same_figures(runs: Path) -> None:
    out = report_cli(runs, *ALL)
    assert out.exit_code == 0, out.output
    folder = runs / "reports" / "exp_sweep"
    rows = list(csv.DictReader((folder / "bd.csv").open()))
    document = json.loads((folder / "report.json").read_text())
    assert {r["curve"] for r in rows} == {"x264 keyint=1 preset=medium", "jpeg"}  # the anchor has no rows
    assert {r["anchor"] for r in rows} == {"x264 preset=medium"}
    for row, entry in zip(rows, document["bd"], strict=True):
        assert row["bd_rate_percent"] == ("n/a" if entry["bd_rate_percent"] is None else str(entry["bd_rate_percent"]))
        assert row["bd_quality"] == ("n/a" if entry["bd_quality"] is None else str(entry["bd_quality"]))
    intra = next(e for e in document["bd"] if e["curve"].startswith("x264") and e["metric"] == "psnr_yuv")
    assert f"{intra['bd_rate_percent']:+.2f}" in out.output  # the terminal table shows the same figure


def test_fewer_than_four_points_is_n_a_with_the_reason_never_nan(runs: Path) -> None:
    write_curve(runs, "exp_short", "x264", {"preset": "slow", "threads": 1}, "crf", X264[:3])
    out = report_cli(runs, *ALL, "exp_short0", "exp_short1", "exp_short2")
    assert out.exit_code == 0, out.output
    folder = runs / "reports" / "exp_sweep"
    document = json.loads((folder / "report.json").read_text(), parse_constant=pytest.fail)  # NaN would fail
    short = next(e for e in document["bd"] if e["curve"] == "x264 preset=slow" and e["metric"] == "psnr_yuv")
    assert short["bd_rate_percent"] is None and short["bd_quality"] is None
    assert short["note"] == "n/a: x264 preset=slow: 3 rate points; a BD figure needs at least 4"
    row = list(csv.DictReader((folder / "bd.csv").open()))[-1]
    assert (row["bd_rate_percent"], row["bd_quality"]) == ("n/a", "n/a")
    assert "nan" not in (folder / "bd.csv").read_text().lower()
    assert "3 rate points; a BD figure needs at least 4" in out.output


# -- pinned conditions ------------------------------------------------------------------------
def test_differing_conditions_are_refused_with_exit_2_naming_field_and_ids(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_experiment(runs, "exp_a", result_json("x264", {"crf": 23}, 0.1, 35.0))
    write_experiment(runs, "exp_b", result_json("x264", {"crf": 28}, 0.05, 32.0, **{"conditions.source.frames": 16}))
    out = report_cli(runs, "exp_a", "exp_b")
    assert out.exit_code == 2
    assert "source.frames within sequence 'carphone': 32 (exp_a) vs 16 (exp_b)" in out.output
    assert "--allow-mismatch" in out.output
    assert not (runs / "reports").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"conditions.source.sha256": "0" * 64}, "source.sha256 within sequence 'carphone'"),
        (
            {"conditions.source.size": [352, 288]},
            "source.size within sequence 'carphone': [176, 144] (exp_a) vs [352, 288] (exp_b)",
        ),
        ({"conditions.metrics.psnr_yuv": "(4*Y+U+V)/6"}, "metrics.psnr_yuv"),
        ({"conditions.rate": "bits in the container"}, "rate"),
        ({"environment.ffmpeg.ffmpeg": "n7.1"}, "environment.ffmpeg"),
        ({"environment.packages.numpy": "1.26.4"}, "environment.numpy: 2.4.6 (exp_a) vs 1.26.4 (exp_b)"),
        ({"environment.packages.opencv-python-headless": "4.10.0.84"}, "environment.opencv"),
        ({"environment.codeclab": "0.2.0"}, "environment.codeclab: 0.1.0 (exp_a) vs 0.2.0 (exp_b)"),
    ],
)
def test_each_pinned_field_is_compared(change: dict[str, Any], field: str) -> None:
    results = {"exp_a": result_json("x264", {}, 0.1, 35.0), "exp_b": result_json("x264", {}, 0.2, 38.0, **change)}
    differences = condition_differences(results, ONE_SEQUENCE, {"exp_a": "x264", "exp_b": "x264"})
    assert len(differences) == 1 and str(differences[0]).startswith(field)


def test_vmaf_definitions_are_pinned_among_the_points_that_measured_vmaf() -> None:
    changed = result_json("x264", {}, 0.2, 38.0, **{"conditions.metrics.vmaf_version": "libvmaf 3.0.0"})
    off = result_json("x264", {}, 0.4, 41.0, **{"metrics.vmaf": None, "conditions.metrics.vmaf": "not measured"})
    curves = {"exp_a": "x264", "exp_b": "x264", "exp_c": "x264"}
    sequences = dict.fromkeys(curves, "carphone")
    measured = {"exp_a": result_json("x264", {}, 0.1, 35.0), "exp_b": changed}
    assert [d.field for d in condition_differences(measured, sequences, curves)] == ["metrics.vmaf_version"]
    with_off = {"exp_a": measured["exp_a"], "exp_c": off}
    assert condition_differences(with_off, sequences, curves) == []


def test_codec_implementation_must_agree_within_a_curve_not_across_curves() -> None:
    other_build = {"conditions.codec.implementation": "libjpeg 9f via Pillow"}
    results = {
        "exp_x": result_json("x264", {}, 0.1, 35.0),
        "exp_j1": result_json("jpeg", {}, 0.6, 34.0),
        "exp_j2": result_json("jpeg", {}, 1.2, 37.0, **other_build),
    }
    two_codecs = {"exp_x": results["exp_x"], "exp_j1": results["exp_j1"]}
    sequences = dict.fromkeys(results, "carphone")
    across = condition_differences(two_codecs, sequences, {"exp_x": "x264", "exp_j1": "jpeg"})
    assert across == []  # x264 and jpeg differ in implementation and colour conversion: that is the comparison
    (within,) = condition_differences(results, sequences, {"exp_x": "x264", "exp_j1": "jpeg", "exp_j2": "jpeg"})
    assert str(within) == (
        "codec.implementation within curve 'jpeg': libjpeg-turbo 3.1.2 via OpenCV 5.0.0 (exp_j1) "
        "vs libjpeg 9f via Pillow (exp_j2)"
    )


def test_differing_fields_groups_ids_by_value_and_tells_a_string_from_a_number() -> None:
    (difference,) = differing_fields({"a": {"f": 32}, "b": {"f": "32"}, "c": {"f": 32}})
    assert difference.values == (("32", ("a", "c")), ("32", ("b",)))


def test_allow_mismatch_reports_and_stamps_terminal_json_and_html(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_curve(runs, "exp_a", "x264", {"preset": "medium"}, "crf", X264)
    write_curve(runs, "exp_b", "jpeg", {}, "quality", JPEG, **{"conditions.source.frames": 16})
    ids = [f"exp_a{i}" for i in range(4)] + [f"exp_b{i}" for i in range(4)]
    out = report_cli(runs, *ids, "--allow-mismatch", "--out", str(tmp_path / "out"))
    assert out.exit_code == 0, out.output
    expected = (
        "source.frames within sequence 'carphone': 32 (exp_a0, exp_a1, exp_a2, exp_a3) "
        "vs 16 (exp_b0, exp_b1, exp_b2, exp_b3)"
    )
    assert f"CONDITIONS DIFFER: {expected}" in out.output
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    assert document["mismatch"]["stamp"] == f"CONDITIONS DIFFER: {expected}"
    assert document["mismatch"]["differences"][0]["values"][1] == {"value": "16", "experiments": ids[4:]}
    assert "source.frames" not in document["conditions"]  # only what every point shares
    page = (tmp_path / "out" / "rd.html").read_text()
    assert 'class="stamp"' in page and "CONDITIONS DIFFER:" in page and html.escape(expected) in page


def test_without_a_mismatch_nothing_is_stamped(runs: Path) -> None:
    out = report_cli(runs, *ALL)
    folder = runs / "reports" / "exp_sweep"
    assert "CONDITIONS DIFFER" not in out.output
    assert "mismatch" not in json.loads((folder / "report.json").read_text())
    assert "CONDITIONS DIFFER" not in (folder / "rd.html").read_text()


def test_vmaf_without_scores_names_the_experiment_and_another_metric(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_experiment(runs, "exp_a", result_json("x264", {"crf": 23}, 0.1, 35.0, **{"metrics.vmaf": None}))
    out = report_cli(runs, "exp_a", "--metric", "vmaf")
    assert out.exit_code == 2
    assert "exp_a has no vmaf in its result.json (it ran with metrics.vmaf off); choose another --metric" in out.output


# -- outputs and the command ------------------------------------------------------------------
def test_every_file_is_written_and_the_page_is_self_contained(runs: Path) -> None:
    out = report_cli(runs, *ALL, "--metric", "ms_ssim")
    assert out.exit_code == 0, out.output
    folder = runs / "reports" / "exp_sweep"
    for name in ("report.csv", "bd.csv", "report.json", "rd.png", "rd.html"):
        assert f"wrote {folder / name}" in out.output.replace("\n", "")
    assert (folder / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (folder / "rd.html").read_text()
    assert not re.search(r"https?://", page)  # no CDN, no fonts, no links out
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=", page)
    assert page.count('<g class="curve"') == 3 and '<div id="status">' in page
    assert "Bjøntegaard deltas against x264 preset=medium" in page and "BD-MS-SSIM" in page
    assert "source.sha256" in page and "codec.colour_conversion" in page  # the conditions are on the page
    assert "bpp 0.1000" in page and "encode 400 fps, decode 900 fps" in page  # hover details
    rows = list(csv.DictReader((folder / "report.csv").open()))
    assert rows[0]["curve"] == "x264 preset=medium" and rows[0]["params"] == "crf=20"
    assert float(rows[0]["ms_ssim"]) == pytest.approx(1 - 10 ** (-32 / 20))


@pytest.mark.parametrize("panels", [1, 2, 4])
def test_the_png_holds_its_whole_title_and_legend_however_few_panels(panels: int) -> None:
    """One clip and a codec package's long label: nothing is cut at the figure's edges."""
    labels = ["hyperprior 0.1.0+q1234.34195336db0f", "mycodec 0.2@3f2a9c1e quality=4 device=any", "x265 preset=medium"]
    title = "carphone: 16 frames from 0, 176x144, 30000/1001 fps, yuv420p (builtin:carphone)"
    plot = Plot(
        curves=[], labels=labels, anchor=labels[-1], metric=METRICS["psnr_yuv"], title=title,
        panel_titles={SequenceId(f"clip{i}", None): f"clip{i}: 16 frames from 0, 176x144" for i in range(panels)},
        differences=[],
    )  # fmt: skip
    figure = png_figure(plot)
    drawn = figure.get_tightbbox()
    width, height = figure.get_size_inches()
    assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= width and drawn.y1 <= height, (drawn, width, height)


def test_help_and_metric_choices_match_the_report_module() -> None:
    out = CliRunner().invoke(cli, ["report", "--help"])
    assert out.exit_code == 0 and "Bjøntegaard" in out.output and "--allow-mismatch" in out.output
    choices = next(p for p in cli.commands["report"].params if p.name == "metric").type.choices  # type: ignore[attr-defined]
    assert list(choices) == list(METRICS)


def test_no_ids_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli, ["report"]).exit_code == 2


def test_a_result_json_without_the_fields_its_status_promises_is_refused_by_name(runs: Path) -> None:
    broken = result_json("x264", {"crf": 23}, 0.1, 35.0)
    write_experiment(runs, "exp_broken", broken)
    del broken["conditions"]
    (runs / "exp_broken" / "result.json").write_text(json.dumps(broken))
    with pytest.raises(ReportError, match="a SUCCEEDED result needs conditions; collect the experiment again"):
        load_experiments(["exp_broken"], runs)

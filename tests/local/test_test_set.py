"""A test set end to end: `codeclab run` on 3 sequences in 2 classes x 2 codecs x 4 rates, then `codeclab report`.

The per-sequence BD-rates the report writes are checked against the `bjontegaard` package, fed the rates and
qualities read back from the points' own result.json files in runs/.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import bjontegaard
import pytest

from tests.conftest import REPO

SPEC = {
    "name": "mini-x264-x265",
    "source": {"test_set": "builtin:mini", "frames": 2},
    "codec": {"name": "x264"},
    "metrics": {"vmaf": False},
    "sweep": {"codecs": [{"name": "x264"}, {"name": "x265"}], "crf": [22, 27, 32, 37]},
}


def codeclab(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "codeclab.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=dict(os.environ), timeout=600)


@pytest.mark.slow
def test_a_test_set_runs_every_point_and_reports_per_sequence_class_and_average(tmp_path: Path) -> None:
    spec, runs = tmp_path / "mini.json", tmp_path / "runs"
    spec.write_text(json.dumps(SPEC))
    run = codeclab("run", str(spec), "--runs-dir", str(runs))
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in runs.glob("exp_*/result.json")]
    assert len(results) == 24 and {r["status"] for r in results} == {"SUCCEEDED"}
    sources = {r["conditions"]["source"]["sequence"]: r["conditions"]["source"].get("class") for r in results}
    assert sources == {"carphone": "QCIF", "bbb": "180p", "bikes": "180p"}

    (sweep_id,) = {json.loads(p.read_text()).get("parent_id") for p in runs.glob("exp_*/record.json")} - {None}
    report = codeclab("report", sweep_id, "--runs-dir", str(runs), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "report" / "bd.csv").read_text().splitlines()))
    psnr = {r["sequence"]: r for r in rows if r["metric"] == "psnr_yuv" and r["curve"].startswith("x265")}
    assert set(psnr) == {"carphone", "bbb", "bikes", "class:QCIF", "class:180p", "average"}
    for sequence in ("carphone", "bbb", "bikes"):
        assert float(psnr[sequence]["bd_rate_percent"]) == pytest.approx(reference(results, sequence), abs=1e-6)
    per_sequence = [float(psnr[s]["bd_rate_percent"]) for s in ("carphone", "bbb", "bikes")]
    assert float(psnr["average"]["bd_rate_percent"]) == pytest.approx(sum(per_sequence) / 3)
    assert float(psnr["class:180p"]["bd_rate_percent"]) == pytest.approx(sum(per_sequence[1:]) / 2)


def reference(results: list[dict], sequence: str) -> float:
    """x265 against x264 on one sequence, as the bjontegaard package computes it from the points' results."""
    curves: dict[str, list[tuple[float, float]]] = {"x264": [], "x265": []}
    for result in results:
        if result["conditions"]["source"]["sequence"] == sequence:
            metrics = result["metrics"]
            curves[result["spec"]["codec"]["name"]].append((metrics["bpp"], metrics["psnr_yuv"]))
    (anchor_rates, anchor_psnr), (test_rates, test_psnr) = (zip(*sorted(curves[c]), strict=True) for c in curves)
    return float(
        bjontegaard.bd_rate(
            anchor_rates, anchor_psnr, test_rates, test_psnr, method="pchip", require_matching_points=False,
            min_overlap=0,
        )
    )  # fmt: skip

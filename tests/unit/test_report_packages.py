"""`codeclab report` on codec packages: each version (name, version, tree and weights hashes) is a curve of its own.

The packages' conditions are the worker's own: the example package unpacked and hash-checked by
codeclab.worker.packages, as a version of its own or with a changed checkpoint.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from codeclab.experiments.result import PackageConditions
from codeclab.report.bd import Curve, bd_rate
from codeclab.report.report import build_report
from codeclab.report.runs import ReportError
from codeclab.worker.packages.unpack import unpack
from tests.conftest import REPO
from tests.unit.test_report import JPEG, X264, report_cli, result_json, write_curve, write_experiment

EXAMPLE = REPO / "examples" / "codecs" / "blockdct"
WEIGHTS = "basis.safetensors"
# (bpp, PSNR-YUV) of a second version: fewer bits for the same quality than X264's points
BETTER = [(bpp * 0.8, psnr) for bpp, psnr in X264]


def package_version(tmp_path: Path, version: str, checkpoint: int | None = None) -> PackageConditions:
    """What the worker records for the example package as `version`; `checkpoint` changes its weights' last byte."""
    folder = tmp_path / "packages" / f"{version}-{checkpoint}"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((folder / "codec.json").read_text())
    manifest["version"] = version
    if checkpoint is not None:
        weights = bytearray((folder / WEIGHTS).read_bytes())
        weights[-1] = checkpoint
        (folder / WEIGHTS).write_bytes(weights)
        manifest["weights"][WEIGHTS] = hashlib.sha256(weights).hexdigest()
    (folder / "codec.json").write_text(json.dumps(manifest))
    return unpack(str(folder), cache=tmp_path / "cache").conditions()


def package_result(package: PackageConditions, quality: int, bpp: float, psnr: float, **changes: Any) -> dict[str, Any]:
    """A package run's result.json: the spec names the package by URI, the conditions by what was unpacked."""
    result = result_json("x264", {}, bpp, psnr, **changes)
    params = {"quality": quality, "threads": 1}
    result["spec"]["codec"] = {"name": "package", "uri": "s3://artifacts/codecs/blockdct.tar.gz", "params": params}
    result["conditions"]["codec"] = {
        "codec": "package",
        "implementation": f"{package['name']} {package['version']}",
        "params": params,
        "device": "cpu",
        "package": copy.deepcopy(package),
    }
    return result


def write_package_curve(runs: Path, prefix: str, package: PackageConditions, points: list, **changes: Any) -> list[str]:
    """One experiment per rate point, ids prefix0, prefix1, ..."""
    ids = [f"{prefix}{index}" for index in range(len(points))]
    for index, (experiment_id, (bpp, psnr)) in enumerate(zip(ids, points, strict=True)):
        write_experiment(runs, experiment_id, package_result(package, 20 + index, bpp, psnr, **changes))
    return ids


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def test_two_versions_are_two_curves_labelled_by_version_and_bd_compares_them(tmp_path: Path, runs: Path) -> None:
    old = write_package_curve(runs, "exp_old", package_version(tmp_path, "0.1"), X264)
    new = write_package_curve(runs, "exp_new", package_version(tmp_path, "0.2"), BETTER)
    report = build_report([*old, *new], runs, "psnr_yuv", None, allow_mismatch=False)
    assert [c.label for c in report.curves] == ["blockdct 0.1", "blockdct 0.2"]  # never "package", never one curve
    assert [len(c.points) for c in report.curves] == [4, 4]
    assert report.anchor == "blockdct 0.1" and report.differences == []
    (row,) = [r for r in report.bd if r.metric.key == "psnr_yuv"]
    expected = bd_rate(
        *(Curve(name, [r for r, _ in c], [q for _, q in c]) for name, c in (("0.1", X264), ("0.2", BETTER)))
    )
    assert row.curve == "blockdct 0.2" and row.bd_rate.value == pytest.approx(expected) and expected < 0
    out = report_cli(runs, *old, *new, "--anchor", "blockdct 0.2", "--out", str(tmp_path / "out"))
    assert out.exit_code == 0, out.output
    curves = json.loads((tmp_path / "out" / "report.json").read_text())["curves"]
    assert [c["codec_conditions"]["codec.package"]["version"] for c in curves] == ["0.1", "0.2"]


def test_the_same_version_with_other_weights_is_another_curve_named_by_its_tree(tmp_path: Path, runs: Path) -> None:
    first, second = package_version(tmp_path, "0.1", checkpoint=1), package_version(tmp_path, "0.1", checkpoint=2)
    assert first["weights"] != second["weights"] and first["version"] == second["version"]
    ids = [*write_package_curve(runs, "exp_a", first, X264), *write_package_curve(runs, "exp_b", second, BETTER)]
    report = build_report(ids, runs, "psnr_yuv", None, allow_mismatch=False)
    labels = [c.label for c in report.curves]
    assert labels == [f"blockdct 0.1@{first['tree_sha256'][:8]}", f"blockdct 0.1@{second['tree_sha256'][:8]}"]
    assert {p.experiment_id for p in report.curves[1].points} == {f"exp_b{i}" for i in range(4)}
    assert all(r.bd_rate.value is not None for r in report.bd if r.metric.key == "psnr_yuv")


def test_the_same_package_twice_is_one_curve_and_a_repeated_point_a_duplicate(tmp_path: Path, runs: Path) -> None:
    package = package_version(tmp_path, "0.1")
    ids = write_package_curve(runs, "exp_a", package, X264)
    write_experiment(runs, "exp_again", package_result(package, 20, *X264[0]))  # another sweep's first point
    report = build_report([*ids, "exp_again"], runs, "psnr_yuv", None, allow_mismatch=False)
    assert [c.label for c in report.curves] == ["blockdct 0.1"]
    assert [(d.experiment_id, d.same_as) for d in report.duplicates] == [("exp_again", "exp_a0")]


def test_versions_on_different_sequences_are_never_averaged_into_one_curve(tmp_path: Path, runs: Path) -> None:
    ids = write_package_curve(runs, "exp_old", package_version(tmp_path, "0.1"), X264)
    foreman = {"conditions.source.sequence": "foreman", "conditions.source.sha256": "0" * 64}
    ids += write_package_curve(runs, "exp_new", package_version(tmp_path, "0.2"), BETTER, **foreman)
    report = build_report(ids, runs, "psnr_yuv", None, allow_mismatch=False)
    assert [(c.sequence.name, c.label) for c in report.curves] == [
        ("carphone", "blockdct 0.1"),
        ("foreman", "blockdct 0.2"),
    ]
    rows = {r.sequence: r for r in report.bd if r.metric.key == "psnr_yuv"}
    assert rows["carphone"].note == "n/a: this curve has no points on carphone"
    assert rows["foreman"].note == "n/a: the anchor has no points on foreman"
    assert (
        rows["average"].bd_rate.value is None
        and rows["average"].note == "over 0 of 2 sequences (left out: carphone, foreman)"
    )


def test_a_package_beside_a_builtin_codec_is_compared_like_any_curve(tmp_path: Path, runs: Path) -> None:
    ids = [*write_curve(runs, "exp_jpeg", "jpeg", {}, "quality", JPEG)]
    ids += write_package_curve(runs, "exp_pkg", package_version(tmp_path, "0.1"), X264)
    out = report_cli(runs, *ids, "--anchor", "blockdct")  # a package's name picks its one curve
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader((runs / "reports" / "exp_jpeg0" / "bd.csv").open()))
    assert {(r["curve"], r["anchor"]) for r in rows} == {("jpeg", "blockdct 0.1")}


def test_an_anchor_naming_two_versions_is_refused_naming_both(tmp_path: Path, runs: Path) -> None:
    ids = write_package_curve(runs, "exp_old", package_version(tmp_path, "0.1"), X264)
    ids += write_package_curve(runs, "exp_new", package_version(tmp_path, "0.2"), BETTER)
    out = report_cli(runs, *ids, "--anchor", "blockdct")
    assert out.exit_code == 2
    assert "--anchor blockdct matches 2 curves: 'blockdct 0.1', 'blockdct 0.2'" in out.output
    assert "give one of their experiment ids or the full label, e.g. --anchor 'blockdct 0.1'" in out.output


def test_records_that_would_merge_two_checkpoints_into_one_curve_are_refused(tmp_path: Path, runs: Path) -> None:
    """Two records with one tree hash but different weights (a record written by hand, or a hash collision)."""
    package = package_version(tmp_path, "0.1")
    tampered: PackageConditions = {**package, "weights": {WEIGHTS: "f" * 64}}
    ids = [*write_package_curve(runs, "exp_a", package, X264), *write_package_curve(runs, "exp_b", tampered, X264)]
    out = report_cli(runs, *ids, "--allow-mismatch")  # no flag lets two versions share a curve
    assert out.exit_code == 2
    message = " ".join(out.output.split())
    tree = package["tree_sha256"][:12]
    assert f"curve 'blockdct 0.1@{tree[:8]}' would merge two different codecs" in message
    assert f"blockdct 0.1 (tree {tree}, weights {WEIGHTS} {package['weights'][WEIGHTS][:12]}) (exp_a0," in message
    assert f"vs blockdct 0.1 (tree {tree}, weights {WEIGHTS} ffffffffffff) (exp_b0," in message
    assert "Leave one of them (or its sweep) out of the ids, or give the packages different versions" in message


def test_a_package_result_that_does_not_say_which_package_is_refused(tmp_path: Path, runs: Path) -> None:
    result = package_result(package_version(tmp_path, "0.1"), 20, *X264[0])
    del result["conditions"]["codec"]["package"]
    write_experiment(runs, "exp_unknown", result)
    with pytest.raises(ReportError, match=r"exp_unknown ran a codec package, but its result.json does not record"):
        build_report(["exp_unknown"], runs, "psnr_yuv", None, allow_mismatch=False)


def write_step_curve(runs: Path, package: PackageConditions) -> list[str]:
    """The example swept over its `step` param, as a sweep's points record it."""
    ids = []
    for index, (step, (bpp, psnr)) in enumerate(zip((24, 16, 12, 8), X264, strict=True)):
        result = package_result(package, 0, bpp, psnr)
        result["spec"]["codec"]["params"] = result["conditions"]["codec"]["params"] = {"step": step}
        write_experiment(runs, f"exp_step{index}", result)
        ids.append(f"exp_step{index}")
    return ids


def test_a_packages_declared_rate_param_moves_its_points_along_one_curve(tmp_path: Path, runs: Path) -> None:
    package = package_version(tmp_path, "0.1")
    assert package["rate_param"] == "step"  # examples/codecs/blockdct/codec.json declares it
    report = build_report(write_step_curve(runs, package), runs, "psnr_yuv", None, allow_mismatch=False)
    assert [(c.label, len(c.points)) for c in report.curves] == [("blockdct 0.1", 4)]
    assert [p.rate_params for p in report.curves[0].points] == ["step=24", "step=16", "step=12", "step=8"]


def test_control_without_a_rate_param_each_step_would_be_a_curve_of_one_point(tmp_path: Path, runs: Path) -> None:
    package = package_version(tmp_path, "0.1")
    del package["rate_param"]
    report = build_report(write_step_curve(runs, package), runs, "psnr_yuv", None, allow_mismatch=False)
    assert sorted(c.label for c in report.curves) == [f"blockdct 0.1 step={s}" for s in (12, 16, 24, 8)]

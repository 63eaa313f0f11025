"""`python -m codeclab.worker`, end to end: numbers checked against ffmpeg, exit codes, faults."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from codeclab.worker.entrypoint import main
from codeclab.worker.sources import builtin_clip_path
from tests.conftest import REPO, extract_y4m, ffmpeg

METRIC_NAMES = {
    "psnr_y",
    "psnr_u",
    "psnr_v",
    "psnr_yuv",
    "ssim",
    "ms_ssim",
    "vmaf",
    "bpp",
    "kbps",
    "compression_ratio",
    "encode_fps",
    "decode_fps",
}


def spec(codec: dict | None = None, **source: object) -> dict:
    return {
        "name": "test",
        "source": {"clip": "builtin:carphone", "frames": 8, **source},
        "codec": codec or {"name": "x264", "params": {"crf": 28}},
        "limits": {"stall_seconds": 30},
    }


def run_worker(
    spec_data: dict | str, out: Path, *args: str, fault: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    spec_path = out.parent / f"{out.name}.json"
    spec_path.write_text(spec_data if isinstance(spec_data, str) else json.dumps(spec_data))
    env = {**os.environ, "CODECLAB_FAULT": fault or ""}
    cmd = [sys.executable, "-m", "codeclab.worker", str(spec_path), "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def result_of(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def x264_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's example: carphone, 32 frames, x264 crf 28."""
    out = tmp_path_factory.mktemp("x264") / "run"
    proc = run_worker((REPO / "examples" / "x264.json").read_text(), out)
    assert proc.returncode == 0, proc.stderr
    return out


def ffmpeg_psnr_frames(recon: Path, reference: Path, tmp: Path) -> list[dict[str, float]]:
    stats = tmp / "psnr.log"
    ffmpeg(
        "-v",
        "error",
        "-i",
        str(recon),
        "-i",
        str(reference),
        "-lavfi",
        f"[0:v][1:v]psnr=stats_file={stats}",
        "-f",
        "null",
        "-",
    )
    rows = []
    for line in stats.read_text().splitlines():
        fields = dict(token.split(":", 1) for token in line.split())
        rows.append({k: float(fields[k]) for k in ("psnr_y", "psnr_u", "psnr_v")})
    return rows


def test_psnr_y_matches_ffmpeg_recomputed_on_the_artifacts(x264_run: Path, tmp_path: Path) -> None:
    result = result_of(x264_run)
    theirs = ffmpeg_psnr_frames(x264_run / "recon.y4m", x264_run / "reference.y4m", tmp_path)
    assert len(theirs) == result["frames"] == 32
    for plane in ("psnr_y", "psnr_u", "psnr_v"):
        mean = sum(row[plane] for row in theirs) / len(theirs)
        assert result["metrics"][plane] == pytest.approx(mean, abs=0.01), plane
    with (x264_run / "metrics.csv").open() as fh:
        ours = list(csv.DictReader(fh))
    for mine, reference in zip(ours, theirs, strict=True):
        # ffmpeg's stats file rounds to 2 decimals
        assert float(mine["psnr_y"]) == pytest.approx(reference["psnr_y"], abs=0.006)


def test_rate_figures_come_from_the_bitstream_on_disk(x264_run: Path) -> None:
    result = result_of(x264_run)
    size = (x264_run / "bitstream.264").stat().st_size
    assert result["bitstream"] == {"file": "bitstream.264", "bytes": size}
    assert result["metrics"]["bpp"] == 8 * size / (176 * 144 * 32)
    assert result["metrics"]["kbps"] == pytest.approx(8 * size / 1000 / (32 * 1001 / 30000))
    assert result["metrics"]["compression_ratio"] == pytest.approx(176 * 144 * 1.5 * 32 / size)


def test_result_records_metrics_conditions_and_environment(x264_run: Path) -> None:
    result = result_of(x264_run)
    assert result["schema_version"] == 1 and result["status"] == "SUCCEEDED"
    assert set(result["metrics"]) == METRIC_NAMES
    assert 0 < result["metrics"]["vmaf"] <= 100  # short clip: VMAF on by default
    cond = result["conditions"]
    assert cond["source"]["frames"] == 32 and cond["source"]["size"] == [176, 144]
    assert cond["codec"]["params"] == {"crf": 28, "preset": "medium", "threads": 1}
    assert "-threads 1" in cond["codec"]["encode_command"]
    assert {"psnr", "psnr_yuv", "ssim", "ms_ssim", "vmaf", "vmaf_version"} <= set(cond["metrics"])
    env = result["environment"]
    assert env["ffmpeg"]["ffmpeg"].startswith("n") and env["packages"]["torch"].startswith("2.13.0")
    assert result["resources"]["device"] == "cpu" and result["resources"]["peak_rss_mb_worker"] > 0


def test_every_artifact_listed_exists(x264_run: Path) -> None:
    artifacts = result_of(x264_run)["artifacts"]
    assert set(artifacts) == {
        "bitstream.264",
        "reference.y4m",
        "recon.y4m",
        "metrics.csv",
        "worker.log",
        "result.json",
    }
    assert all(Path(uri).is_file() for uri in artifacts.values())
    log = (x264_run / "worker.log").read_text()
    assert "progress: encode 32/32 frames" in log and "progress: metrics 32/32 frames" in log


def test_same_spec_gives_the_same_bytes_and_numbers(x264_run: Path, tmp_path: Path) -> None:
    proc = run_worker((REPO / "examples" / "x264.json").read_text(), tmp_path / "again", "--no-vmaf")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again" / "bitstream.264").read_bytes() == (x264_run / "bitstream.264").read_bytes()
    again, first = result_of(tmp_path / "again")["metrics"], result_of(x264_run)["metrics"]
    assert again["vmaf"] is None
    assert all(again[k] == first[k] for k in ("psnr_yuv", "ssim", "ms_ssim", "bpp"))


def test_no_reference_leaves_the_reference_out(tmp_path: Path) -> None:
    proc = run_worker(
        spec({"name": "jpeg", "params": {"quality": 40}}),
        tmp_path / "out",
        "--no-reference",
        "--no-vmaf",
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out" / "reference.y4m").exists()
    assert "reference.y4m" not in result_of(tmp_path / "out")["artifacts"]


RAW_FRAMES = {"reference.y4m", "recon.y4m"}
NOT_KEPT = {"artifacts": {"reference": False, "recon": False}}


def test_raw_frames_the_spec_does_not_keep_are_measured_but_not_published(tmp_path: Path) -> None:
    jpeg = spec({"name": "jpeg", "params": {"quality": 40}})
    kept, lean = (
        run_worker(jpeg, tmp_path / "kept", "--no-vmaf"),
        run_worker({**jpeg, **NOT_KEPT}, tmp_path / "lean", "--no-vmaf"),
    )
    assert kept.returncode == lean.returncode == 0, lean.stderr
    assert set(result_of(tmp_path / "kept")["artifacts"]) >= RAW_FRAMES  # control: kept by default
    assert {path.name for path in (tmp_path / "kept").iterdir()} >= RAW_FRAMES
    assert not RAW_FRAMES & {path.name for path in (tmp_path / "lean").iterdir()}
    assert not RAW_FRAMES & set(result_of(tmp_path / "lean")["artifacts"])
    assert quality(tmp_path / "lean") == quality(tmp_path / "kept")


def quality(out: Path) -> dict[str, float]:
    """The metrics but the speeds, which no two runs share."""
    return {key: value for key, value in result_of(out)["metrics"].items() if not key.endswith("_fps")}


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["crash:decode@1", "freeze:decode@1"])
def test_a_failed_run_publishes_no_raw_frames_the_spec_does_not_keep(tmp_path: Path, fault: str) -> None:
    """Both ways a run fails: an exception out of the run, and a stall the watchdog ends from its own thread."""
    job = {**spec(), "limits": {"stall_seconds": 2}}
    control, lean = (run_worker(j, tmp_path / name, "--no-vmaf", fault=fault, timeout=60)
                     for j, name in ((job, "control"), ({**job, **NOT_KEPT}, "lean")))  # fmt: skip
    assert control.returncode == lean.returncode != 0
    assert "reference.y4m" in result_of(tmp_path / "control")["artifacts"]  # a failure keeps what it had
    assert not RAW_FRAMES & {path.name for path in (tmp_path / "lean").iterdir()}
    assert not RAW_FRAMES & set(result_of(tmp_path / "lean")["artifacts"])


def make_corrupt_mp4(folder: Path) -> Path:
    path = folder / "corrupt.mp4"
    path.write_bytes(builtin_clip_path("carphone").read_bytes()[:2000])
    return path


def make_y4m(folder: Path, pix_fmt: str) -> Path:
    return extract_y4m("carphone", folder / f"{pix_fmt}.y4m", 2, pix_fmt)


def make_raw(folder: Path) -> Path:
    path = folder / "clip.yuv"
    path.write_bytes(bytes(176 * 144 * 3 // 2))
    return path


BAD_INPUTS = {
    "zero frames": (lambda d: spec(frames=0), "INVALID_SPEC", "$.source.frames: 0 is less than the minimum of 1"),
    "start past the end": (
        lambda d: spec(start=400),
        "INVALID_SOURCE",
        "$.source.start: no frames at or after frame 400",
    ),
    "crop larger than the clip": (
        lambda d: spec(crop=[0, 0, 200, 100]),
        "INVALID_SOURCE",
        "reaches beyond the 176x144 clip",
    ),
    "size larger than the clip": (lambda d: spec(size=[352, 288]), "INVALID_SOURCE", "is larger than the 176x144 clip"),
    "odd size": (lambda d: spec(size=[101, 64]), "INVALID_SPEC", "$.source.size[0]: 101 is odd"),
    "corrupt mp4": (
        lambda d: spec(clip=str(make_corrupt_mp4(d))),
        "INVALID_SOURCE",
        "corrupt.mp4: corrupt or unreadable video",
    ),
    "4:2:2 y4m": (lambda d: spec(clip=str(make_y4m(d, "yuv422p"))), "INVALID_SOURCE", "colour format C422 is refused"),
    "10-bit y4m to an 8-bit codec": (
        lambda d: spec({"name": "jpeg"}, clip=str(make_y4m(d, "yuv420p10le")), frames=2),
        "INVALID_SPEC",
        "$.codec.name: jpeg takes yuv420p only, and this source is yuv420p10le",
    ),
    "raw yuv without geometry": (
        lambda d: spec(clip=str(make_raw(d))),
        "INVALID_SOURCE",
        "clip.yuv is raw video with no header, and neither the spec nor the file name gives its width, height",
    ),
    "unknown codec": (lambda d: spec({"name": "h266"}), "INVALID_SPEC", '$.codec.name: "h266" is not a valid choice'),
    "crf out of range": (
        lambda d: spec({"name": "x264", "params": {"crf": 52}}),
        "INVALID_SPEC",
        "$.codec.params.crf: 52 is greater than the maximum of 51",
    ),
    "schema failure": (
        lambda d: {"source": {"clip": "builtin:carphone"}},
        "INVALID_SPEC",
        "'name' is a required property",
    ),
    "broken json": (lambda d: '{"name": "x",', "INVALID_SPEC", "line 1 column 14: not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_exit_2(case: str, tmp_path: Path) -> None:
    make_spec, error_type, message = BAD_INPUTS[case]
    proc = run_worker(make_spec(tmp_path), tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0] and error_type in errors[0], proc.stderr
    result = result_of(tmp_path / "out")
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == error_type and result["error"]["exit_code"] == 2


@pytest.mark.slow
def test_a_hang_is_stopped_by_the_stall_watchdog(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_worker(
        {**spec(), "limits": {"stall_seconds": 2}},
        tmp_path / "out",
        fault="hang:encode@1",
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert elapsed < 20
    error = result_of(tmp_path / "out")["error"]
    assert error["type"] == "STALLED" and "in stage 'encode'" in error["message"]


@pytest.mark.slow
def test_a_hang_deaf_to_signals_is_ended_by_the_watchdog_itself(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_worker({**spec(), "limits": {"stall_seconds": 2}}, tmp_path / "out", fault="freeze:decode@1", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 20
    assert result_of(tmp_path / "out")["error"]["type"] == "STALLED"


@pytest.mark.slow
def test_a_slow_but_steady_job_is_not_killed(tmp_path: Path) -> None:
    # 8 frames x 0.5 s = 4 s of work against a 2 s stall limit, but never 2 s without progress
    job = {**spec({"name": "jpeg", "params": {"quality": 50}}), "limits": {"stall_seconds": 2}}
    proc = run_worker(job, tmp_path / "out", "--no-vmaf", fault="slow:encode:0.5", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert result_of(tmp_path / "out")["timings"]["encode_s"] > 4


def test_an_unexpected_exception_is_an_internal_error_with_the_traceback_in_the_log(
    tmp_path: Path,
) -> None:
    proc = run_worker(spec(), tmp_path / "out", fault="crash:metrics@2")
    assert proc.returncode == 5
    assert "Traceback" not in proc.stderr and "INTERNAL: InjectedCrash" in proc.stderr
    assert result_of(tmp_path / "out")["error"]["type"] == "INTERNAL"
    assert "Traceback" in (tmp_path / "out" / "worker.log").read_text()


def test_a_codec_failure_exits_4_with_codec_error(tmp_path: Path) -> None:
    proc = run_worker(spec(), tmp_path / "out", fault="fail:decode@1")
    assert proc.returncode == 4 and "CODEC_ERROR: injected codec failure in decode" in proc.stderr
    assert result_of(tmp_path / "out")["error"]["type"] == "CODEC_ERROR"


def test_sigkill_leaves_no_result_for_the_orchestrator_to_misread(tmp_path: Path) -> None:
    proc = run_worker(spec(), tmp_path / "out", fault="kill:encode@1")
    assert proc.returncode == -9
    assert not (tmp_path / "out" / "result.json").exists()


def test_an_unparsable_fault_setting_is_refused(tmp_path: Path) -> None:
    proc = run_worker(spec(), tmp_path / "out", fault="explode")
    assert proc.returncode == 5 and "is not KIND:STAGE" in proc.stderr


@mock_aws
def test_spec_and_artifacts_on_s3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="specs")
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(
        Bucket="specs",
        Key="e1.json",
        Body=json.dumps(spec({"name": "webp", "params": {"quality": 60}})),
    )
    assert main(["s3://specs/e1.json", "--out", "s3://artifacts/exp/e1", "--no-vmaf"]) == 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"]}
    names = {
        "bitstream.clf",
        "reference.y4m",
        "recon.y4m",
        "metrics.csv",
        "worker.log",
        "result.json",
    }
    assert keys == {f"exp/e1/{n}" for n in names}
    result = json.loads(s3.get_object(Bucket="artifacts", Key="exp/e1/result.json")["Body"].read())
    assert result["artifacts"]["recon.y4m"] == "s3://artifacts/exp/e1/recon.y4m"
    assert (
        result["bitstream"]["bytes"] == s3.head_object(Bucket="artifacts", Key="exp/e1/bitstream.clf")["ContentLength"]
    )


@mock_aws
def test_missing_s3_clip_fails_cleanly_and_still_writes_the_result(tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="clips")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec(clip="s3://clips/missing.mp4")))
    assert main([str(spec_path), "--out", str(tmp_path / "out")]) == 2
    error = result_of(tmp_path / "out")["error"]
    assert error == {
        "type": "INVALID_SOURCE",
        "message": "$.source.clip: s3://clips/missing.mp4 does not exist (check the bucket and key)",
        "exit_code": 2,
    }

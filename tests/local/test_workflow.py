"""The synthesized state machine, run end to end on the local emulator; every failure path for real."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from codeclab.experiments import api
from codeclab.experiments.limits import codec_caps
from codeclab.local import runner
from codeclab.local.emulator import LocalCloud
from codeclab.local.faults import LAMBDA_FAULT_ENV
from tests.conftest import wait_until_running


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


def spec(frames: int = 4, **limits: int) -> dict[str, Any]:
    return {
        "name": "carphone-jpeg",
        "source": {"clip": "builtin:carphone", "frames": frames},
        "codec": {"name": "jpeg", "params": {"quality": 50}},
        "limits": {"timeout_seconds": 120, "stall_seconds": 30, **limits},
        "metrics": {"vmaf": False},
    }


def assert_final(outcome: runner.Outcome, status: str, error_type: str | None) -> None:
    record = json.loads((outcome.folder / "record.json").read_text())
    assert record["status"] == status, record.get("error")
    assert (record.get("error") or {}).get("type") == error_type
    alerts = json.loads((outcome.folder / "alerts.json").read_text())
    assert len(alerts) == (0 if status == "SUCCEEDED" else 1), alerts


def test_a_run_goes_through_the_state_machine_into_runs(cloud: LocalCloud, tmp_path: Path) -> None:
    seen: list[dict] = []
    outcome = runner.run(cloud, spec(), tmp_path, on_progress=seen.append)
    assert_final(outcome, "SUCCEEDED", None)
    record = outcome.record
    assert ":execution:" in record["execution_arn"] and record["execution_arn"].endswith(outcome.experiment_id)
    assert [h["status"] for h in record["history"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert record["result"]["frames"] == 4 and record["result"]["metrics"]["bpp"] > 0
    for name in ("result.json", "metrics.csv", "bitstream.clf", "recon.y4m", "worker.log", "spec.json"):
        assert (outcome.folder / name).is_file(), name
    assert any(r.get("progress", {}).get("frames_done", 0) > 0 for r in seen)


def test_keeping_again_fetches_only_what_is_missing_or_changed(
    cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror keeps a final record and collect keeps it again: the second pass must not copy every artifact
    (a 1080p job's recon and reference y4m are gigabytes), yet must fetch a copy cut short or an object changed."""
    outcome = runner.run(cloud, spec(), tmp_path)
    s3, fetched = cloud.services().s3, []
    get_object = s3.get_object
    monkeypatch.setattr(s3, "get_object", lambda **kw: fetched.append(kw["Key"].rsplit("/", 1)[1]) or get_object(**kw))
    inodes = {path.name: path.stat().st_ino for path in outcome.folder.iterdir()}

    runner.keep(cloud, outcome.record, tmp_path)
    assert fetched == []
    assert inodes["recon.y4m"] == (outcome.folder / "recon.y4m").stat().st_ino

    # control: a copy cut short (a kill mid-copy leaves its own mtime) and an object rewritten are fetched again
    recon = outcome.folder / "recon.y4m"
    whole = recon.read_bytes()
    recon.write_bytes(whole[: len(whole) // 2])
    key = f"experiments/{outcome.experiment_id}/metrics.csv"
    changed = get_object(Bucket=cloud.bucket, Key=key)["Body"].read() + b"# rewritten\n"
    s3.put_object(Bucket=cloud.bucket, Key=key, Body=changed)
    runner.keep(cloud, outcome.record, tmp_path)
    assert sorted(fetched) == ["metrics.csv", "recon.y4m"]
    assert recon.read_bytes() == whole and (outcome.folder / "metrics.csv").read_bytes() == changed


def test_worker_exiting_non_zero_is_codec_error(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "fail:decode@1")
    assert_final(runner.run(cloud, spec(), tmp_path), "FAILED", "CODEC_ERROR")


def test_a_hang_is_stalled_by_the_watchdog(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "hang:encode@1")
    outcome = runner.run(cloud, spec(stall_seconds=2), tmp_path)
    assert_final(outcome, "FAILED", "STALLED")
    assert "no progress for" in outcome.record["error"]["message"]


def test_a_job_past_its_time_limit_is_timed_out(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "hang:encode@1")  # the watchdog would wait 60 s; the limit is 10 s
    started = time.monotonic()
    outcome = runner.run(cloud, spec(timeout_seconds=10, stall_seconds=60), tmp_path)
    assert_final(outcome, "TIMED_OUT", "TIMEOUT")
    assert time.monotonic() - started < 40


def test_record_result_raising_fails_internal_and_still_alerts(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(LAMBDA_FAULT_ENV, "record_result")
    outcome = runner.run(cloud, spec(), tmp_path)
    assert_final(outcome, "FAILED", "INTERNAL")
    assert "InjectedLambdaFault" in outcome.record["error"]["message"]


def test_cancel_ends_aborted_through_reconcile(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "slow:encode:0.5")
    submitted = runner.submit(cloud, spec(frames=32))
    store = cloud.services().store
    wait_until_running(store, submitted["experiment_id"])
    boto3.client("stepfunctions").stop_execution(executionArn=submitted["execution_arn"], cause="test")
    record = runner.wait(cloud, submitted)
    outcome = runner.collect(cloud, record, tmp_path)
    assert_final(outcome, "ABORTED", "ABORTED")


def test_an_invalid_spec_starts_nothing(cloud: LocalCloud) -> None:
    before = boto3.client("stepfunctions").list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]
    bad = {**spec(), "codec": {"name": "jpeg", "params": {"quality": 101}}}
    with pytest.raises(api.ApiError) as info:
        runner.submit(cloud, bad)
    assert info.value.status == 400 and info.value.details[0]["path"] == "$.codec.params.quality"
    after = boto3.client("stepfunctions").list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]
    assert len(after) == len(before)


def test_local_mode_checks_limits_codec_against_the_caps_its_worker_gets(cloud: LocalCloud) -> None:
    """One set of caps: the synthesized job's environment, which the local worker runs with, is what submit checks."""
    job_caps = codec_caps(cloud.stack.job_definition().environment)
    assert cloud.services().codec_caps == job_caps and job_caps["wall_seconds"] == 21600  # cdk.json's default
    over = {**spec(), "limits": {**spec()["limits"], "codec": {"wall_seconds": job_caps["wall_seconds"] + 1}}}
    with pytest.raises(api.ApiError) as info:
        runner.submit(cloud, over)
    assert info.value.status == 400 and info.value.details[0]["path"] == "$.limits.codec.wall_seconds"
    assert "raise codecMaxWallSeconds in cdk.json's context" in info.value.details[0]["message"]


def test_concurrent_runs_do_not_interfere(cloud: LocalCloud, tmp_path: Path) -> None:
    outcomes: list[runner.Outcome] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(runner.run(cloud, spec(frames=2), tmp_path))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.status for o in outcomes) == ["SUCCEEDED"] * 3
    assert len({o.experiment_id for o in outcomes}) == 3


def custom_spec(code: str, **params: object) -> dict[str, Any]:
    return {**spec(frames=8), "name": "custom", "codec": {"name": "custom", "code": code, "params": params}}


def test_a_custom_codec_runs_through_the_workflow(cloud: LocalCloud, tmp_path: Path) -> None:
    code = (Path(__file__).resolve().parents[2] / "examples" / "custom_codec" / "dct_codec.py").read_text()
    outcome = runner.run(cloud, custom_spec(code, step=16), tmp_path)
    assert_final(outcome, "SUCCEEDED", None)
    size = (outcome.folder / "bitstream.bin").stat().st_size
    metrics = outcome.record["result"]["metrics"]
    assert metrics["bpp"] == 8 * size / (176 * 144 * 8) and metrics["psnr_yuv"] > 33


def test_an_escape_the_ast_check_misses_is_a_sandbox_violation(cloud: LocalCloud, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    code = (
        "import numpy as np\n"
        "def encode(frames, params):\n"
        f"    np.ctypeslib.ctypes.CDLL(None).system(b'touch {marker}')\n"
        "    return b''\n"
        "def decode(bitstream, header):\n"
        "    return None\n"
    )
    outcome = runner.run(cloud, custom_spec(code), tmp_path / "runs")
    assert_final(outcome, "FAILED", "SANDBOX_VIOLATION")
    assert "forbidden system call" in outcome.record["error"]["message"]
    assert not marker.exists()

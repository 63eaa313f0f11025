"""The `codeclab` command as a person uses it: real processes, real exit codes, runs/ as the record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from codeclab.local.runs import RunsFolder
from codeclab.local.service import LocalService
from tests.conftest import REPO, wait_until_running


def codeclab(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "codeclab.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout
    )


def small_spec(tmp_path: Path, **extra: object) -> Path:
    spec = {
        "name": "cli-jpeg",
        "source": {"clip": "builtin:carphone", "frames": 3},
        "codec": {"name": "jpeg", "params": {"quality": 60}},
        "metrics": {"vmaf": False},
        **extra,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_every_command_has_help() -> None:
    for command in (
        "run",
        "status",
        "list",
        "cancel",
        "codecs",
        "codec",
        "doctor",
        "serve",
        "submit",
        "report",
        "train",
    ):
        out = codeclab(command, "--help")
        assert out.returncode == 0 and "Usage: codeclab" in out.stdout, command


def test_codecs_lists_the_registry_with_parameters() -> None:
    out = codeclab("codecs")
    assert out.returncode == 0
    for name in ("x264", "x265", "svtav1", "vp9", "jpeg", "webp", "avif"):
        assert name in out.stdout
    assert "0..51" in out.stdout and "medium" in out.stdout


def test_run_succeeds_into_runs_and_status_and_list_read_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    out = codeclab("run", str(small_spec(tmp_path)), "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr
    assert "answered by: the API handler in this process (http://127.0.0.1:" in out.stderr
    (folder,) = runs.glob("exp_*")
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "SUCCEEDED" and f"exp_{folder.name[4:]}" in out.stdout
    assert json.loads((folder / "alerts.json").read_text()) == []
    assert not RunsFolder(runs).endpoints() and not list((runs / folder.name).glob("owner.json"))
    status = codeclab("status", folder.name, "--runs-dir", str(runs))
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    assert f"answered by: {runs}/ (local)" in status.stderr
    listed = codeclab("list", "--status", "SUCCEEDED", "--runs-dir", str(runs))
    assert folder.name in listed.stdout and f"answered by: {runs}/ (local)" in listed.stderr
    assert folder.name not in codeclab("list", "--status", "FAILED", "--runs-dir", str(runs)).stdout
    cancel = codeclab("cancel", folder.name, "--runs-dir", str(runs))
    assert cancel.returncode == 1 and f"{folder.name} already ended as SUCCEEDED" in cancel.stderr


def test_a_failed_run_exits_1_with_the_error_type(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    out = codeclab("run", str(small_spec(tmp_path)), "--runs-dir", str(runs), env={"CODECLAB_FAULT": "fail:encode@1"})
    assert out.returncode == 1
    assert "FAILED CODEC_ERROR: injected codec failure" in " ".join(out.stderr.split())
    (folder,) = runs.glob("exp_*")
    assert len(json.loads((folder / "alerts.json").read_text())) == 1


def test_an_invalid_spec_exits_2_before_anything_starts(tmp_path: Path) -> None:
    bad = small_spec(tmp_path, limits={"stall_seconds": 0})
    started = time.monotonic()
    out = codeclab("run", str(bad), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2
    assert "$.limits.stall_seconds: 0 is less than the minimum of 1" in " ".join(out.stderr.split())
    assert time.monotonic() - started < 10 and not (tmp_path / "runs").exists()


def test_a_codec_limit_over_the_operators_cap_exits_2_naming_field_cap_and_setting(tmp_path: Path) -> None:
    """Local mode's caps are the stack's, from the same cdk.json: 21600 s by default, checked before any job."""
    over = small_spec(tmp_path, limits={"codec": {"wall_seconds": 21601}})
    out = codeclab("run", str(over), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2, out.stderr[-2000:]
    message = " ".join(out.stderr.split())
    assert "$.limits.codec.wall_seconds: 21601 is over this deployment's cap of 21600" in message
    assert "raise codecMaxWallSeconds in cdk.json's context" in message and "Traceback" not in out.stderr
    assert not list((tmp_path / "runs").glob("exp_*"))  # nothing started


def test_a_test_set_with_missing_clips_or_a_bad_manifest_exits_2_naming_them(tmp_path: Path) -> None:
    missing = small_spec(tmp_path, source={"test_set": ["builtin:carphone", "gone/a.y4m", "gone/b.y4m"]})
    out = codeclab("run", str(missing), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "$.source: no such file 'gone/a.y4m', 'gone/b.y4m'" in " ".join(out.stderr.split())
    manifest = tmp_path / "set.csv"
    manifest.write_text("uri,frames\nbuiltin:carphone,many\n")
    bad = small_spec(tmp_path, source={"test_set": str(manifest)})
    out = codeclab("run", str(bad), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and f"{manifest} line 2: frames: 'many' is not of type 'integer'" in " ".join(
        out.stderr.split()
    )
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()


def test_a_fault_switch_it_cannot_take_stops_local_mode_in_one_line_with_exit_2(tmp_path: Path) -> None:
    out = codeclab("run", str(small_spec(tmp_path)), "--runs-dir", str(tmp_path / "runs"),
                   env={"CODECLAB_BATCH_FAULT": "host-lost"})  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "error: CODECLAB_BATCH_FAULT='host-lost' is not" in out.stderr and "Traceback" not in out.stderr
    assert not list((tmp_path / "runs").glob("exp_*"))  # nothing started


def test_status_or_cancel_of_an_unknown_experiment_says_so(tmp_path: Path) -> None:
    for command in ("status", "cancel"):
        out = codeclab(command, "exp_01M8H5K1FQP3YRBSD64WDC7V0A", "--runs-dir", str(tmp_path))
        assert out.returncode == 1 and f"no experiment exp_01M8H5K1FQP3YRBSD64WDC7V0A in {tmp_path}" in out.stderr
        assert f"answered by: {tmp_path}/ (local)" in out.stderr


@pytest.fixture
def served(tmp_path: Path):
    with LocalService(tmp_path / "runs", port=0) as service:
        yield service


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.loads(response.read())


def wait_for_record(runs: Path, experiment_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    path = runs / experiment_id / "record.json"
    while time.monotonic() < deadline:
        if path.is_file() and (record := json.loads(path.read_text()))["status"] == status:
            return record
        time.sleep(0.3)
    raise AssertionError(f"{experiment_id} never reached {status}")


def test_serve_runs_posted_experiments_and_cancel_reaches_them(
    served: LocalService, tmp_path: Path, monkeypatch
) -> None:
    runs = served.runs.root
    assert [e.url for e in served.runs.endpoints()] == [served.url]
    done = post(f"{served.url}/experiments", small_spec(tmp_path).read_bytes())
    assert wait_for_record(runs, done["experiment_id"], "SUCCEEDED")["execution_arn"] == done["execution_arn"]

    monkeypatch.setenv("CODECLAB_FAULT", "slow:encode:0.5")
    slow = post(
        f"{served.url}/experiments",
        small_spec(tmp_path, source={"clip": "builtin:carphone", "frames": 30}).read_bytes(),
    )
    store = served.cloud.services().store
    wait_until_running(store, slow["experiment_id"])
    out = codeclab("cancel", slow["experiment_id"], "--runs-dir", str(runs))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["cancel_requested"] and f"answered by: codeclab serve at {served.url}" in out.stderr
    record = wait_for_record(runs, slow["experiment_id"], "ABORTED")
    assert record["error"]["type"] == "ABORTED"
    # the alert goes out after the record is final; the collector adds it once the execution has ended
    alerts = runs / slow["experiment_id"] / "alerts.json"
    deadline = time.monotonic() + 30
    while len(json.loads(alerts.read_text())) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(json.loads(alerts.read_text())) == 1


def test_run_no_wait_submits_to_the_running_serve(served: LocalService, tmp_path: Path) -> None:
    out = codeclab("run", str(small_spec(tmp_path)), "--no-wait", "--runs-dir", str(served.runs.root))
    assert out.returncode == 0, out.stderr
    assert f"answered by: codeclab serve at {served.url}" in out.stderr
    experiment_id = json.loads(out.stdout)["experiment_id"]
    assert wait_for_record(served.runs.root, experiment_id, "SUCCEEDED")["status"] == "SUCCEEDED"


def test_run_no_wait_without_a_serve_says_what_to_do(tmp_path: Path) -> None:
    out = codeclab("run", str(small_spec(tmp_path)), "--no-wait", "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "no `codeclab serve` is running on" in out.stderr
    assert f"answered by: {tmp_path / 'runs'}/ (local)" in out.stderr


def test_a_codec_package_runs_through_the_local_workflow_and_records_what_it_was(tmp_path: Path) -> None:
    spec = json.loads((REPO / "examples/package.json").read_text())
    spec["source"]["frames"] = 2
    path = tmp_path / "package.json"
    path.write_text(json.dumps(spec))
    out = codeclab("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr[-2000:]
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("exp_*/result.json")]
    package = result["conditions"]["codec"]["package"]
    assert (package["name"], package["version"]) == ("blockdct", "0.1") and len(package["tree_sha256"]) == 64
    assert list(package["weights"]) == ["basis.safetensors"]

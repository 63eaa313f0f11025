"""Local mode loses nothing: real `codeclab` processes, real signals, real full disks.

Each test drives the command a person would type, interrupts or starves it the way life does, and
then checks what the person finds: every experiment final in runs/, finished sweep points kept, no
worker left running, no stale process registration, no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from codeclab.local.client import call_api
from codeclab.local.runs import RunsFolder
from tests.conftest import REPO

SLOW = {"CODECLAB_FAULT": "slow:encode:0.5"}  # half a second a frame: the encode is still going when hit


def spec_file(folder: Path, frames: int = 30, name: str = "durable", **extra: Any) -> Path:
    spec = {
        "name": name,
        "source": {"clip": "builtin:carphone", "frames": frames},
        "codec": {"name": "jpeg", "params": {"quality": 60}},
        "metrics": {"vmaf": False},
        **extra,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A temp folder of the test's own (so leftovers can be counted) and a state folder for parked records."""
    (tmp_path / "tmp").mkdir()
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "XDG_STATE_HOME": str(tmp_path / "state")}


def codeclab(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codeclab.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "codeclab.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def running(runs: Path) -> list[dict[str, Any]]:
    """The records runs/ shows as RUNNING right now: it is written as the experiment goes."""
    return [r for r in RunsFolder(runs).records() if r["status"] == "RUNNING"]


def workers_of(experiment_id: str) -> list[int]:
    """Live worker processes of the experiment: a worker started for it names it on its command line (its spec's S3
    key does); a warm one (codeclab.local.standby) writes the experiment's job log, <experiment_id>.log, on stdout."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stdout = str((cmdline.parent / "fd" / "1").readlink()) if "codeclab.local.standby" in text else ""
        except OSError:
            continue
        if ("codeclab.worker" in text and experiment_id in text) or f"/{experiment_id}.log" in stdout:
            found.append(int(cmdline.parent.name))
    return found


def ended(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr


def assert_all_final_and_tidy(runs: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    records = RunsFolder(runs).records()
    assert records and all(r["status"] in {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"} for r in records)
    assert not list(runs.glob("exp_*/owner.json")) and not RunsFolder(runs).endpoints()
    assert not list((runs / ".codeclab" / "processes").glob("*.json"))
    assert not list(Path(env["TMPDIR"]).glob("codeclab-*")), list(Path(env["TMPDIR"]).iterdir())
    for record in records:
        wait_for(f"no worker of {record['experiment_id']}", lambda r=record: not workers_of(r["experiment_id"]), 10)
    return records


# --- interrupting `codeclab run` ------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_cancels_keeps_the_experiment_aborted_and_exits_with_its_code(
    tmp_path: Path, env: dict[str, str], signum: int, code: int
) -> None:
    runs = tmp_path / "runs"
    proc = start("run", str(spec_file(tmp_path)), "--runs-dir", str(runs), env={**env, **SLOW})
    (record,) = wait_for("the experiment RUNNING in runs/", lambda: running(runs))
    proc.send_signal(signum)
    returncode, stderr = ended(proc)
    assert returncode == code and "Traceback" not in stderr and "interrupted" in stderr
    (final,) = assert_all_final_and_tidy(runs, env)
    assert final["experiment_id"] == record["experiment_id"] and final["status"] == "ABORTED"
    assert final["error"]["type"] == "ABORTED"
    folder = runs / final["experiment_id"]
    assert len(json.loads((folder / "alerts.json").read_text())) == 1 and (folder / "job.log").is_file()


def test_a_second_ctrl_c_stops_at_once_and_still_leaves_every_record_final(tmp_path: Path, env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    proc = start("run", str(spec_file(tmp_path)), "--runs-dir", str(runs), env={**env, **SLOW})
    wait_for("the experiment RUNNING in runs/", lambda: running(runs))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    returncode, stderr = ended(proc)
    assert returncode == 130 and "Traceback" not in stderr
    (final,) = assert_all_final_and_tidy(runs, env)
    assert final["status"] == "ABORTED"


def test_kill_9_on_run_takes_its_worker_and_the_next_command_finalises_the_experiment(
    tmp_path: Path, env: dict[str, str]
) -> None:
    runs = tmp_path / "runs"
    proc = start("run", str(spec_file(tmp_path)), "--runs-dir", str(runs), env={**env, **SLOW})
    (record,) = wait_for("the experiment RUNNING in runs/", lambda: running(runs))
    experiment_id = record["experiment_id"]
    assert wait_for("its worker", lambda: workers_of(experiment_id))
    proc.kill()
    proc.wait()
    wait_for("the worker to die with its orchestrator", lambda: not workers_of(experiment_id), 10)
    assert RunsFolder(runs).record(experiment_id)["status"] == "RUNNING"  # as SIGKILL left it
    status = codeclab("status", experiment_id, "--runs-dir", str(runs), env=env)
    assert status.returncode == 0 and "ORCHESTRATOR_LOST" in status.stdout + status.stderr
    final = RunsFolder(runs).record(experiment_id)
    assert final["status"] == "ABORTED" and final["error"]["type"] == "ORCHESTRATOR_LOST"
    assert (
        not list((runs / ".codeclab" / "processes").glob("*.json"))
        and not (runs / experiment_id / "owner.json").exists()
    )


def test_ctrl_c_on_a_sweep_keeps_the_points_that_finished(tmp_path: Path, env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    sweep = spec_file(tmp_path, frames=6, name="sweep", sweep={"quality": [10, 20, 30, 40, 50, 60, 70, 80],
                                                                "max_concurrency": 2})  # fmt: skip
    proc = start("run", str(sweep), "--runs-dir", str(runs), env={**env, **SLOW})
    done = lambda: [r for r in RunsFolder(runs).records() if r["status"] == "SUCCEEDED"]  # noqa: E731
    finished = wait_for("three points SUCCEEDED in runs/", lambda: len(done()) >= 3 and done(), 120)
    proc.send_signal(signal.SIGINT)
    returncode, stderr = ended(proc)
    assert returncode == 130 and "Traceback" not in stderr
    records = {r["experiment_id"]: r for r in assert_all_final_and_tidy(runs, env)}
    for point in finished:
        assert records[point["experiment_id"]]["status"] == "SUCCEEDED"
        assert (runs / point["experiment_id"] / "result.json").is_file()
    (parent,) = [r for r in records.values() if "point_count" in r]
    assert parent["status"] == "ABORTED" and parent["point_count"] == 8
    points = [r for r in records.values() if r.get("parent_id")]  # those that started; the rest never will
    assert {r["status"] for r in points} <= {"SUCCEEDED", "ABORTED"} and len(points) <= 8


# --- `codeclab serve`: killed, restarted, shared, bursted -------------------------------------------------


def start_serve(runs: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = start("serve", "--port", "0", "--runs-dir", str(runs), env=env)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert "codeclab API on " in line, line + proc.stderr.read()  # type: ignore[union-attr]
    return proc, line.split("codeclab API on ", 1)[1].split()[0]


def post(url: str, spec: Path) -> dict[str, Any]:
    status, body = call_api(f"{url}/experiments", "POST", spec.read_bytes())
    assert status == 202, body
    return body  # type: ignore[no-any-return]


def test_kill_9_on_serve_then_a_restart_finalises_the_lost_and_lists_what_runs_holds(
    tmp_path: Path, env: dict[str, str]
) -> None:
    runs = tmp_path / "runs"
    proc, url = start_serve(runs, {**env, **SLOW})
    quick = post(url, spec_file(tmp_path, frames=1, name="quick"))
    wait_for("the quick one SUCCEEDED", lambda: (RunsFolder(runs).record(quick["experiment_id"]) or {}).get(
        "status") == "SUCCEEDED")  # fmt: skip
    slow = post(url, spec_file(tmp_path, name="slow"))
    wait_for("the slow one RUNNING in runs/", lambda: running(runs))
    proc.kill()
    proc.wait()
    wait_for("its worker to die with serve", lambda: not workers_of(slow["experiment_id"]), 10)
    again, url = start_serve(runs, env)
    try:
        status, body = call_api(f"{url}/experiments?status=ABORTED")
        assert status == 200 and [item["experiment_id"] for item in body["items"]] == [slow["experiment_id"]]
        assert body["items"][0]["error"]["type"] == "ORCHESTRATOR_LOST"
        status, body = call_api(f"{url}/experiments/{quick['experiment_id']}")
        assert status == 200 and body["status"] == "SUCCEEDED"
    finally:
        again.send_signal(signal.SIGINT)
        assert ended(again)[0] == 130
    assert_all_final_and_tidy(runs, env)


def test_serve_and_run_share_a_runs_folder_and_each_cancel_reaches_its_owner(
    tmp_path: Path, env: dict[str, str]
) -> None:
    runs = tmp_path / "runs"
    serve, url = start_serve(runs, {**env, **SLOW})
    try:
        # long enough to be still running once `run` has started on a loaded machine (both are cancelled anyway)
        served = post(url, spec_file(tmp_path, frames=120, name="served"))
        run = start("run", str(spec_file(tmp_path, name="ran")), "--own-stack", "--runs-dir", str(runs),
                    env={**env, **SLOW})  # fmt: skip
        wait_for("both RUNNING in runs/", lambda: len(running(runs)) == 2)
        assert {endpoint.kind for endpoint in RunsFolder(runs).endpoints()} == {"serve", "run"}
        (ran,) = [r for r in running(runs) if r["experiment_id"] != served["experiment_id"]]
        for experiment_id in (served["experiment_id"], ran["experiment_id"]):
            status = codeclab("status", experiment_id, "--runs-dir", str(runs), env=env)
            assert status.returncode == 0 and "RUNNING" in status.stdout
            assert codeclab("cancel", experiment_id, "--runs-dir", str(runs), env=env).returncode == 0
        assert ended(run)[0] == 1  # its experiment ended ABORTED
        wait_for(
            "the served one ABORTED", lambda: RunsFolder(runs).record(served["experiment_id"])["status"] == "ABORTED"
        )
    finally:
        serve.send_signal(signal.SIGINT)
        assert ended(serve)[0] == 130
    assert {r["status"] for r in assert_all_final_and_tidy(runs, env)} == {"ABORTED"}


def test_run_joins_the_serve_on_its_folder_and_ctrl_c_cancels_only_its_own_experiment(
    tmp_path: Path, env: dict[str, str]
) -> None:
    runs = tmp_path / "runs"
    serve, url = start_serve(runs, {**env, **SLOW})
    try:
        served = post(url, spec_file(tmp_path, frames=120, name="served"))
        quick = codeclab("run", str(spec_file(tmp_path, frames=1, name="quick")), "--runs-dir", str(runs), env=env)
        assert quick.returncode == 0, quick.stderr
        assert f"answered by: codeclab serve at {url}" in quick.stderr  # its warm stack ran it
        (kept,) = [r for r in RunsFolder(runs).records() if r["spec"]["name"] == "quick"]
        assert kept["status"] == "SUCCEEDED" and (runs / kept["experiment_id"] / "result.json").is_file()
        joined = start("run", str(spec_file(tmp_path, name="joined")), "--runs-dir", str(runs), env=env)
        wait_for("both RUNNING in runs/", lambda: len(running(runs)) == 2)
        assert [endpoint.kind for endpoint in RunsFolder(runs).endpoints()] == ["serve"]
        (own,) = [r for r in running(runs) if r["experiment_id"] != served["experiment_id"]]
        joined.send_signal(signal.SIGINT)
        returncode, stderr = ended(joined)
        assert returncode == 130 and "Traceback" not in stderr and "ended ABORTED" in stderr, stderr
        assert RunsFolder(runs).record(own["experiment_id"])["status"] == "ABORTED"
        assert RunsFolder(runs).record(served["experiment_id"])["status"] == "RUNNING"  # the serve's own goes on
        assert serve.poll() is None
    finally:
        serve.send_signal(signal.SIGINT)
        assert ended(serve)[0] == 130
    statuses = {r["spec"]["name"]: r["status"] for r in assert_all_final_and_tidy(runs, env)}
    assert statuses == {"served": "ABORTED", "quick": "SUCCEEDED", "joined": "ABORTED"}


def test_serve_takes_a_burst_of_50_posts_and_answers_reads_meanwhile(tmp_path: Path, env: dict[str, str]) -> None:
    """...and, interrupted, stops all 50: most have no record yet (CreateRecord is still queued), only an execution."""
    runs = tmp_path / "runs"
    serve, url = start_serve(runs, {**env, "CODECLAB_FAULT": "slow:encode:60"})  # none can end on its own
    body = spec_file(tmp_path, frames=2).read_bytes()
    try:
        with ThreadPoolExecutor(max_workers=100) as pool:
            # every request is answered, however long the queue (about 12 s for the last here when idle)
            posts = [pool.submit(call_api, f"{url}/experiments", "POST", body, None, 120) for _ in range(50)]
            reads = [pool.submit(call_api, f"{url}/experiments?status=QUEUED", "GET", None, None, 120)
                     for _ in range(50)]  # fmt: skip
            answers = [future.result()[0] for future in posts]
            read_answers = [future.result()[0] for future in reads]
        assert all(status == 202 for status in answers), answers
        assert all(status == 200 for status in read_answers), read_answers
        assert _raw(url, b"POST /experiments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}")[
            :12] == b"HTTP/1.1 400"  # fmt: skip
        for _ in range(5):  # clients that give up halfway
            with socket.create_connection(_address(url)) as client:
                client.sendall(b"POST /experiments HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    finally:
        serve.send_signal(signal.SIGINT)
        returncode, stderr = ended(serve, timeout=180)
    assert returncode == 130 and "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert "50 experiment(s) ended ABORTED" in stderr, stderr
    assert {r["status"] for r in assert_all_final_and_tidy(runs, env)} == {"ABORTED"}


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _raw(url: str, request: bytes) -> bytes:
    with socket.create_connection(_address(url), timeout=10) as client:
        client.sendall(request)
        return client.recv(4096)


# --- bad input is a clear error --------------------------------------------------------------------------


@pytest.fixture
def bad_specs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 10_000 + "]" * 10_000)
    latin = tmp_path / "latin1.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    huge = spec_file(tmp_path, name="huge")
    huge.write_text(huge.read_text().replace('"name": "huge"', '"name": "' + "x" * 1_000_000 + '"'))
    missing = spec_file(tmp_path, name="missing")
    missing.write_text(missing.read_text().replace("builtin:carphone", str(tmp_path / "no-such-clip.y4m")))
    yield {"nested": nested, "not UTF-8": latin, "a 1 MB name": huge, "a missing local clip": missing}


@pytest.mark.parametrize("case", ["nested", "not UTF-8", "a 1 MB name", "a missing local clip"])
def test_a_bad_spec_is_exit_2_with_a_short_message_before_anything_starts(
    case: str, bad_specs: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    started = time.monotonic()
    out = codeclab("run", str(bad_specs[case]), "--runs-dir", str(tmp_path / "runs"), env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr) < 2000, out.stderr[:500]
    assert time.monotonic() - started < 20 and not (tmp_path / "runs").exists()
    command = [sys.executable, "-m", "codeclab.worker", str(bad_specs[case]), "--out", str(tmp_path / "out"), "--quiet"]
    worker = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    assert worker.returncode == 2 and "Traceback" not in worker.stderr and len(worker.stderr) < 3000
    if case != "a missing local clip":  # the worker finds that one itself, as INVALID_SOURCE
        result = json.loads((tmp_path / "out" / "result.json").read_text())
        assert result["error"]["type"] == "INVALID_SPEC" and len(result["error"]["message"]) < 2000


def test_the_api_answers_a_nested_or_non_utf8_body_with_400(tmp_path: Path, env: dict[str, str]) -> None:
    serve, url = start_serve(tmp_path / "runs", env)
    try:
        assert call_api(f"{url}/experiments", "POST", b"[" * 10_000 + b"]" * 10_000)[0] == 400
        assert call_api(f"{url}/experiments", "POST", b'{"name": "caf\xe9"}')[0] == 400
    finally:
        serve.send_signal(signal.SIGINT)
        returncode, stderr = ended(serve)
    assert returncode == 130 and "Traceback" not in stderr


def test_a_y4m_header_claiming_a_million_pixels_square_is_invalid_source(tmp_path: Path, env: dict[str, str]) -> None:
    clip = tmp_path / "liar.y4m"
    clip.write_bytes(b"YUV4MPEG2 W1000000 H1000000 F25:1 C420jpeg\nFRAME\n" + bytes(64))
    spec = spec_file(tmp_path, name="liar")
    spec.write_text(spec.read_text().replace("builtin:carphone", str(clip)))
    worker = subprocess.run([sys.executable, "-m", "codeclab.worker", str(spec), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert worker.returncode == 2 and "Traceback" not in worker.stderr
    error = json.loads((tmp_path / "out" / "result.json").read_text())["error"]
    assert error["type"] == "INVALID_SOURCE" and "1000000x1000000" in error["message"]


# --- full disks -------------------------------------------------------------------------------------------


def restricted(*options: str, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.restricted_host", *options, "--", *command], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=180)  # fmt: skip


def worker(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "codeclab.worker", str(spec), "--out", str(out), "--no-vmaf"]


@pytest.mark.parametrize(
    ("where", "options"),
    [
        ("the output folder", lambda tmp: ["--tmpfs", f"{tmp / 'out'}:96k"]),
        ("the temp folder", lambda tmp: ["--tmpfs", f"{tmp / 'tmp'}:16k"]),
        ("a file-size limit (ulimit -f)", lambda tmp: ["--file-size", "65536"]),
    ],
)
def test_a_refused_write_is_storage_not_the_sources_fault(
    where: str, options: Callable[[Path], list[str]], tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    run = restricted(*options(tmp_path), command=worker(spec_file(tmp_path, frames=8), out), env=env)
    assert run.returncode == 8, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Logging error" not in run.stderr
    result = out / "result.json"
    if result.exists():  # written whole or not at all
        error = json.loads(result.read_text())["error"]
        assert error["type"] == "STORAGE" and "INVALID_SOURCE" not in run.stderr
    assert not list(out.glob(".result.json.*"))


def test_run_on_a_full_runs_folder_parks_the_record_for_the_next_command(tmp_path: Path, env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "codeclab.cli", "run", str(spec_file(tmp_path, frames=8)), "--runs-dir",
               str(runs)]  # fmt: skip
    run = restricted("--tmpfs", f"{runs}:48k", command=command, env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "STORAGE" in run.stderr and "parked at" in run.stderr
    (parked,) = (tmp_path / "state" / "codeclab" / "unsaved").glob("exp_*.json")
    experiment_id = parked.stem
    # the tmpfs is gone with the command's namespace: runs/ has room now, and any command adopts the record
    listed = codeclab("list", "--runs-dir", str(runs), env=env)
    assert listed.returncode == 0 and experiment_id in listed.stdout
    assert RunsFolder(runs).record(experiment_id)["status"] == "SUCCEEDED" and not parked.exists()

"""`codeclab serve` answers on loopback only: locally nothing authenticates a caller (on AWS, AWS_IAM does).

The emulator is replaced by a stand-in, as binding the API needs none of it; test_http_api.py covers the
server's refusal of non-loopback hosts, this covers that the command really serves on 127.0.0.1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from codeclab.cli import serve
from codeclab.local import service
from codeclab.local.runs import RunsFolder
from tests.conftest import REPO


class NoCloud:
    """Stands in for LocalCloud (moto): no request reaches it, the tests only bind and read the address."""

    def __init__(self, jobs: int | None = None) -> None:
        self.record_listeners: list[object] = []
        self.job_folder = Path(tempfile.gettempdir()) / "codeclab-jobs-none"
        self.lambda_environment: dict[str, str] = {}  # no caps set: the API states the defaults

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_the_service_binds_its_api_to_127_0_0_1(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "LocalCloud", NoCloud)
    with service.LocalService(tmp_path, port=0) as running:
        # The URL is built from the bound socket's own address (getsockname), not from what was asked for.
        assert running.url.startswith("http://127.0.0.1:")
        assert [endpoint.url for endpoint in RunsFolder(tmp_path).endpoints()] == [running.url]


def test_serve_offers_no_host_to_bind_to():
    assert {param.name for param in serve.params} == {"port", "runs_dir"}


def test_serve_announces_its_loopback_url_and_ctrl_c_stops_it_with_130(tmp_path):
    command = [sys.executable, "-m", "codeclab.cli", "serve", "--port", "0", "--runs-dir", str(tmp_path)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    announced = proc.stdout.readline()  # type: ignore[union-attr]
    assert "codeclab API on http://127.0.0.1:" in announced
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    assert not RunsFolder(tmp_path).endpoints() and not list((tmp_path / ".codeclab" / "processes").iterdir())

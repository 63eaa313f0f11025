"""`codeclab serve` answers on loopback only: locally nothing authenticates a caller (on AWS, AWS_IAM does).

The emulator is replaced by a stand-in, as binding the API needs none of it; test_http_api.py covers the
server's refusal of non-loopback hosts, this covers that the command really serves on 127.0.0.1.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from codeclab.cli import cli, serve
from codeclab.local import ENDPOINT_FILE, service


class NoCloud:
    """Stands in for LocalCloud (moto): no request reaches it, the tests only bind and read the address."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_the_service_binds_its_api_to_127_0_0_1(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "LocalCloud", NoCloud)
    with service.LocalService(tmp_path, port=0) as running:
        # The URL is built from the bound socket's own address (getsockname), not from what was asked for.
        assert running.url.startswith("http://127.0.0.1:")
        endpoint = json.loads((tmp_path / ENDPOINT_FILE).read_text())
        assert endpoint["url"] == running.url


def test_serve_offers_no_host_to_bind_to():
    assert {param.name for param in serve.params} == {"port", "runs_dir"}


def test_serve_announces_its_loopback_url(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "LocalCloud", NoCloud)

    def interrupted(self):
        raise KeyboardInterrupt  # as Ctrl-C would, once the API is up

    monkeypatch.setattr(service.LocalService, "serve_forever", interrupted)
    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "codeclab API on http://127.0.0.1:" in result.output
    assert not (tmp_path / ENDPOINT_FILE).exists()  # removed when serve stops

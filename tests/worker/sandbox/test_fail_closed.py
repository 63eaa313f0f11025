"""Where a layer cannot be applied, untrusted code does not run: the worker ends SANDBOX_UNAVAILABLE (exit 7).

Each host is this machine with a layer taken away by real kernel means (restricted_host.py), and
the worker runs end to end as the Batch job runs it. `"trusted": true` runs anyway, and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclab.worker.sources import builtin_clip_path
from tests.conftest import REPO
from tests.worker.sandbox.support import write_reference
from tests.worker.sandbox.test_benign import BENIGN

pytestmark = pytest.mark.slow  # real child processes per case: `make test` runs them, `make test-fast` does not


HOSTS = {
    "no Landlock": (["--hide-landlock"], "landlock: this kernel has no Landlock"),
    "no CAP_SETUID": (["--no-setuid"], "identity: the worker is not root with CAP_SETUID"),
    "no private mounts and no tmpfs": (["--no-unshare"], "scratch: "),
}


def run_worker(tmp_path: Path, codec: dict[str, object], restrictions: list[str] = (), **env: str) -> tuple[int, dict]:
    clip = write_reference(tmp_path / "clip.y4m")
    spec = {"name": "fail-closed", "source": {"clip": str(clip)}, "codec": {"name": "custom", **codec}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    worker = [sys.executable, "-m", "codeclab.worker", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out"),
              "--no-vmaf", "--quiet"]  # fmt: skip
    command = [sys.executable, "-m", "tests.restricted_host", *restrictions, "--", *worker]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})  # fmt: skip
    return proc.returncode, json.loads((tmp_path / "out" / "result.json").read_text())


@pytest.mark.parametrize("host", list(HOSTS))
def test_untrusted_code_fails_closed_where_a_required_layer_is_missing(host: str, tmp_path: Path) -> None:
    restrictions, reason = HOSTS[host]
    code, result = run_worker(tmp_path, {"code": BENIGN["numpy zlib"]}, restrictions)
    assert code == 7 and result["status"] == "FAILED"
    assert result["error"]["type"] == "SANDBOX_UNAVAILABLE" and reason in result["error"]["message"]
    assert '"trusted": true' in result["error"]["message"]


def test_trusted_code_runs_on_such_a_host_and_the_result_says_what_was_missing(tmp_path: Path) -> None:
    code, result = run_worker(tmp_path, {"code": BENIGN["numpy zlib"], "trusted": True}, ["--hide-landlock"])
    assert code == 0 and result["status"] == "SUCCEEDED"
    sandbox = result["conditions"]["codec"]["sandbox"]
    assert sandbox["trusted"] is True and sandbox["required"] == []
    for role in ("encoder", "decoder"):
        assert "landlock" in sandbox[role]["missing"] and "seccomp" in sandbox[role]["applied"]


def test_a_batch_container_without_private_mounts_uses_the_job_definitions_tmpfs(tmp_path: Path) -> None:
    scratch = tmp_path / "sandbox"
    code, result = run_worker(
        tmp_path, {"code": BENIGN["numpy zlib"]}, ["--no-unshare", "--tmpfs", f"{scratch}:64m"],
        CODECLAB_SANDBOX_SCRATCH=str(scratch),
    )  # fmt: skip
    assert code == 0, result.get("error")
    decoder = result["conditions"]["codec"]["sandbox"]["decoder"]
    assert "host's tmpfs of 67108864 bytes" in decoder["applied"]["scratch"]
    assert "namespaces" in decoder["missing"] and not decoder["trusted"]


def test_a_decoder_that_opens_the_builtin_clip_gets_nothing_through_the_worker(tmp_path: Path) -> None:
    """The escape as it was found: cv2.VideoCapture on the clip, for an exact reconstruction from 1 byte."""
    clip = builtin_clip_path("carphone")
    decode = (
        "import cv2, numpy as np\n"
        "def encode(frames, params):\n    return b'x'\n"
        "def decode(bitstream, header):\n"
        f"    video = cv2.VideoCapture({str(clip)!r})\n"
        "    frames = [cv2.cvtColor(video.read()[1], cv2.COLOR_BGR2RGB) for _ in range(header['frames'])]\n"
        "    return np.stack(frames)\n"
    )
    spec = {"name": "cheat", "source": {"clip": "builtin:carphone", "frames": 2},
            "codec": {"name": "custom", "code": decode}}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    worker = [sys.executable, "-m", "codeclab.worker", str(tmp_path / "spec.json"), "--out", str(out), "--no-vmaf"]
    assert subprocess.run(worker, cwd=REPO, capture_output=True, timeout=120).returncode != 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "FAILED" and result["error"]["type"] in {"CODEC_ERROR", "SANDBOX_VIOLATION"}


def test_doctor_names_the_missing_layer_and_exits_1() -> None:
    doctor = [sys.executable, "-c", "from codeclab.cli import main; main()", "doctor"]
    here = subprocess.run(doctor, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert here.returncode == 0 and "Untrusted custom codecs run here" in here.stdout
    command = [sys.executable, "-m", "tests.restricted_host", "--hide-landlock", "--", *doctor]
    without = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert without.returncode == 1 and "SANDBOX_UNAVAILABLE" in without.stderr
    assert "this kernel has no Landlock" in without.stdout


def test_codec_check_fails_closed_naming_the_layer_and_with_trusted_says_what_was_missing() -> None:
    check = [
        sys.executable,
        "-c",
        "from codeclab.cli import main; main()",
        "codec",
        "check",
        "examples/codecs/blockdct",
    ]
    command = [sys.executable, "-m", "tests.restricted_host", "--hide-landlock", "--", *check]
    refused = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "SANDBOX_UNAVAILABLE" in refused.stderr and "this kernel has no Landlock" in refused.stderr
    assert "RD point" not in refused.stdout and "--trusted" in refused.stderr
    trusted = subprocess.run([*command, "--trusted"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert trusted.returncode == 0, trusted.stderr
    assert "trusted: not every layer was required" in trusted.stdout and "RD point" in trusted.stdout
    assert trusted.stdout.count("not applied: landlock (this kernel has no Landlock") == 2  # encoder and decoder

"""Shared fixtures: real clips decoded once per session, and small helpers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from codeclab.worker.ffmpeg import ffmpeg_exe
from codeclab.worker.sources import builtin_clip_path

# Tests never talk to real AWS.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

REPO = Path(__file__).resolve().parents[1]


def ffmpeg(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the pinned ffmpeg binary; fail the test with its stderr if it fails."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def extract_y4m(clip: str, path: Path, frames: int, pix_fmt: str = "yuv420p") -> Path:
    """The first frames of a builtin clip as y4m, written by ffmpeg alone (independent of our reader)."""
    source = str(builtin_clip_path(clip))
    ffmpeg("-v", "error", "-i", source, "-frames:v", str(frames), "-pix_fmt", pix_fmt, "-strict", "-1", str(path))
    return path


@pytest.fixture(scope="session")
def carphone_y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 8 frames of carphone."""
    return extract_y4m("carphone", tmp_path_factory.mktemp("clips") / "carphone8.y4m", 8)


def wait_until_running(store, experiment_id: str, timeout: float = 60) -> None:
    """Poll the record until the worker has marked it RUNNING; fail rather than hang."""
    deadline = time.monotonic() + timeout
    while (store.find(experiment_id) or {}).get("status") != "RUNNING":
        assert time.monotonic() < deadline, f"{experiment_id} never reached RUNNING"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def table_definition() -> dict[str, Any]:
    """KeySchema, attributes and GSIs exactly as the CDK stack synthesizes them (the synthesis local mode keeps)."""
    from codeclab.local.template import synthesized_template

    resources = synthesized_template(REPO / "cdk.out")["Resources"].values()
    (table,) = [resource for resource in resources if resource["Type"] == "AWS::DynamoDB::Table"]
    props = table["Properties"]
    return {k: props[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")}

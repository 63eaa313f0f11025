"""Shared fixtures: real clips decoded once per session, and small helpers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


@pytest.fixture(scope="session")
def carphone_y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 8 frames of carphone as a y4m file written by ffmpeg itself."""
    path = tmp_path_factory.mktemp("clips") / "carphone8.y4m"
    ffmpeg(
        "-v",
        "error",
        "-i",
        str(builtin_clip_path("carphone")),
        "-frames:v",
        "8",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return path

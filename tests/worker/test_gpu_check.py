"""`make gpu-check` cannot run its GPU steps here; its refusal and its CPU rehearsal keep the script from rotting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from codeclab.worker.codecs.custom import has_cuda

from ..conftest import REPO

SCRIPT = [sys.executable, "scripts/gpu_check.py"]


@pytest.mark.skipif(has_cuda(), reason="this host has a CUDA device")
def test_without_cuda_it_refuses_and_says_where_to_run_it() -> None:
    proc = subprocess.run(SCRIPT, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs a CUDA device" in proc.stdout and "--rehearse-on-cpu" in proc.stdout


@pytest.mark.slow  # the learned codec in the worker, then the package in three sandboxed children
def test_the_cpu_rehearsal_runs_every_step_and_finds_the_package_identical_to_learned() -> None:
    proc = subprocess.run([*SCRIPT, "--rehearse-on-cpu"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "its bitstream is the learned codec's: True" in proc.stdout
    assert "the CPU decode is byte-identical to the device's" in proc.stdout

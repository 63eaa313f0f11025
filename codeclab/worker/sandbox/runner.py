"""The parent side: run a custom codec's encoder or decoder in a contained child process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codeclab.worker.errors import CodecFailure, SandboxViolation, WorkerError
from codeclab.worker.processes import kill_process_group
from codeclab.worker.sandbox import child

GIB = 1 << 30
# Only these reach the child; nothing with AWS_, no tokens, no HOME of the worker.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 600.0
    cpu_seconds: int = 600
    file_bytes: int = 2 * GIB
    address_space_bytes: int | None = 16 * GIB  # None with CUDA: its driver maps far more virtual memory
    allowed_imports: list[str] = field(default_factory=list)
    preload: list[str] = field(default_factory=list)


def run_child(role: str, code: str, inputs: dict[str, bytes], limits: SandboxLimits) -> dict[str, bytes]:
    """Run ROLE in a fresh private folder holding only `inputs`; return the files it produced."""
    with _private_folder() as folder:
        (folder / "codec.py").write_text(code)
        (folder / "limits.json").write_text(json.dumps(asdict(limits)))
        for name, data in inputs.items():
            (folder / name).write_bytes(data)
        _run(role, folder, limits)
        produced = {"encode": "bitstream.bin", "decode": "decoded.npz"}[role]
        if not (folder / produced).is_file():
            raise CodecFailure(f"custom codec {role}r ended without writing its output")
        # what the child could actually apply on this host (written before any user code ran)
        return {produced: (folder / produced).read_bytes(), "sandbox.json": (folder / "sandbox.json").read_bytes()}


@contextmanager
def _private_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="codeclab-sandbox-"))  # mode 0700: only its owner can look in
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(role: str, folder: Path, limits: SandboxLimits) -> None:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update({"HOME": str(folder), "TMPDIR": str(folder), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"})
    command = [sys.executable, "-m", "codeclab.worker.sandbox.child", role, str(folder)]
    with (folder / "output.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
        try:
            returncode = proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            raise SandboxViolation(
                f"custom codec {role}r ran past its wall-clock limit of {limits.wall_seconds:g} s"
            ) from None
        finally:
            if proc.poll() is None:
                kill_process_group(proc)
    if returncode != child.OK:
        raise _failure(role, returncode, folder, limits)


def _failure(role: str, returncode: int, folder: Path, limits: SandboxLimits) -> Exception:
    outcome = _read_outcome(folder)
    who = f"custom codec {role}r"
    if returncode == child.USER_ERROR:
        return CodecFailure(f"{who} raised an exception:\n{outcome or _tail(folder)}")
    if returncode == child.POLICY:
        return SandboxViolation(f"{who}: {outcome}")
    if returncode == child.SETUP:
        return WorkerError(f"the sandbox for the {who} could not be set up: {outcome}")
    if returncode < 0:
        return _signal_failure(who, -returncode, limits)
    return CodecFailure(f"{who} exited with code {returncode}: {_tail(folder)}")


def _signal_failure(who: str, signum: int, limits: SandboxLimits) -> Exception:
    reasons = {
        signal.SIGSYS: "made a forbidden system call (network, a new process, exec, ptrace or mount) and was killed",
        signal.SIGXCPU: f"used more than its {limits.cpu_seconds} CPU seconds",
        signal.SIGKILL: f"was killed (CPU limit of {limits.cpu_seconds} s, or out of memory)",
        signal.SIGXFSZ: f"wrote a file larger than its limit of {limits.file_bytes} bytes",
    }
    if signum in reasons:
        return SandboxViolation(f"{who} {reasons[signum]}")
    return CodecFailure(f"{who} crashed with signal {signal.Signals(signum).name}")


def _read_outcome(folder: Path) -> str:
    try:
        return str(json.loads((folder / "outcome.json").read_text())["message"])
    except (OSError, ValueError, KeyError):
        return ""


def _tail(folder: Path, limit: int = 2000) -> str:
    try:
        return (folder / "output.log").read_bytes()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return ""


def decoded_arrays(data: bytes) -> dict[str, Any]:
    """Read the decoder's npz without pickle."""
    import io

    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}

"""Batch jobs run locally: the worker as a child process, with the job definition's command and
environment plus the job's overrides, against the emulator. It uses CUDA when this machine has it.

Like Batch, the runner enforces the attempt duration, and it stops the job when its execution
is stopped (Step Functions terminates the job it was waiting for).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeclab.worker.processes import kill_process_group

log = logging.getLogger("codeclab.local")

POLL_SECONDS = 0.2
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
EXITED_REASON = "Essential container in task exited"
STOPPED_REASON = "Job terminated: the execution was stopped"


@dataclass
class JobDefinition:
    """What the local runner needs from the template's AWS::Batch::JobDefinition."""

    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalJobRunner:
    job_definition: JobDefinition
    emulator_environment: dict[str, str]  # credentials and endpoint of the emulator
    execution_stopped: Callable[[str], bool]
    log_folder: Path  # each job's stdout and stderr; the worker's own worker.log is in its artifacts
    durations: dict[str, float] = field(default_factory=dict)  # job wall time by experiment id, for benchmarks

    def __call__(self, params: dict[str, Any], execution_arn: str) -> dict[str, Any]:
        overrides = params.get("ContainerOverrides") or {}
        command = list(overrides.get("Command") or self.job_definition.command)
        env = {**_host_environment(), **self.emulator_environment, **self.job_definition.environment}
        env.update(_pairs(overrides.get("Environment")))
        attempt_seconds = float((params.get("Timeout") or {}).get("AttemptDurationSeconds") or 0) or None
        name = params.get("JobName", "local-job")
        log.info("job %s: python -m codeclab.worker %s", name, " ".join(command))
        started = time.time()
        exit_code, reason = self._run(command, env, attempt_seconds, execution_arn)
        self.durations[env.get("CODECLAB_EXPERIMENT_ID", name)] = time.time() - started
        status = "SUCCEEDED" if exit_code == 0 else "FAILED"
        container = {"Command": command, "ExitCode": exit_code, "Reason": reason}
        return {
            "JobName": name,
            "JobQueue": params.get("JobQueue", ""),
            "Status": status,
            "StatusReason": reason,
            "CreatedAt": int(started * 1000),
            "StartedAt": int(started * 1000),
            "StoppedAt": int(time.time() * 1000),
            "Container": container,
            "Attempts": [{"Container": container, "StatusReason": reason}],
        }

    def _run(
        self, command: list[str], env: dict[str, str], limit: float | None, execution_arn: str
    ) -> tuple[int | None, str]:
        self.log_folder.mkdir(parents=True, exist_ok=True)
        with (self.log_folder / f"{env.get('CODECLAB_EXPERIMENT_ID', 'job')}.log").open("ab") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "codeclab.worker", *command],
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            return self._watch(proc, limit, execution_arn)

    def _watch(self, proc: subprocess.Popen[bytes], limit: float | None, execution_arn: str) -> tuple[int | None, str]:
        deadline = time.monotonic() + limit if limit else None
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                kill_process_group(proc)
                return None, TIMEOUT_REASON
            if self.execution_stopped(execution_arn):
                kill_process_group(proc)
                return None, STOPPED_REASON
            time.sleep(POLL_SECONDS)
        return proc.returncode, EXITED_REASON


def _host_environment() -> dict[str, str]:
    """This process's environment as the job starts (PATH, CUDA, faults), less any real AWS settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _pairs(entries: list[dict[str, str]] | None) -> dict[str, str]:
    """Batch's [{Name, Value}] (or the lower-case form Step Functions adds) as a dict."""
    return {e.get("Name", e.get("name", "")): str(e.get("Value", e.get("value", ""))) for e in entries or []}

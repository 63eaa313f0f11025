"""Batch jobs run locally: the worker as a child process, with the job definition's command and
environment plus the job's overrides, against the emulator. It uses CUDA when this machine has it.

Like Batch, the runner enforces the attempt duration, retries an attempt as the job definition's
retry strategy says (a lost host is retried, a worker's own exit is not), cancels a job that waits
RUNNABLE past the queue's time limit for its blocking reason, and stops the job when its execution
is stopped (Step Functions terminates the job it was waiting for).

The fault plan in force when a job starts (faults.py) can make Batch itself misbehave: no capacity (the job
stays RUNNABLE until the queue cancels it, after the plan's RUNNABLE limit if it sets one), or the host under
each of the first N attempts going away. It also says which worker fault the job's environment carries.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

from codeclab.local.faults import VARIABLES, FaultPlan
from codeclab.local.standby import JobOrder
from codeclab.worker.processes import PARENT_PID_ENV, kill_process_group, stop_process_group

log = logging.getLogger("codeclab.local")

POLL_SECONDS = 0.2
# A stopped or timed-out job gets SIGTERM, then SIGKILL after this, as Batch's container stop does (30 s there):
# the worker removes its temporary folders on SIGTERM.
STOP_GRACE_SECONDS = 3.0
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
EXITED_REASON = "Essential container in task exited"
STOPPED_REASON = "Job terminated: the execution was stopped"
# Batch's own wording (its troubleshooting guide), which the error classifier reads.
HOST_LOST_REASON = "Host EC2 (instance i-0local00000000000) terminated."
NO_CAPACITY_REASON = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested"
CANCELLED_REASON = "Canceled by JobStateTimeLimit action due to reason: {reason}"
JOB_SLOTS_ENV = "CODECLAB_LOCAL_JOBS"
WARM_WORKERS_ENV = "CODECLAB_WARM_WORKERS"  # standbys kept ready (WarmWorkers); 0 starts every job cold


# What the template's job definition and job queue say (CloudFormation's property names).
class EvaluateOnExitTemplate(TypedDict, total=False):
    Action: str
    OnStatusReason: str
    OnReason: str
    OnExitCode: str


class RetryStrategyTemplate(TypedDict, total=False):
    Attempts: int
    EvaluateOnExit: list[EvaluateOnExitTemplate]


class TimeLimitActionTemplate(TypedDict):
    Reason: str
    MaxTimeSeconds: int
    Action: str
    State: NotRequired[str]


# What the state machine's batch:submitJob.sync task passes (its Parameters, resolved).
class NameValue(TypedDict, total=False):
    Name: str
    Value: str
    name: str  # the lower-case form Step Functions adds
    value: str


class ContainerOverrides(TypedDict, total=False):
    Command: list[str]
    Environment: list[NameValue]


class JobTimeout(TypedDict, total=False):
    AttemptDurationSeconds: int


class SubmitJobParameters(TypedDict, total=False):
    JobName: str
    JobQueue: str
    JobDefinition: str
    ContainerOverrides: ContainerOverrides
    Timeout: JobTimeout


# DescribeJobs' view of a finished job, the parts the workflow reads.
class AttemptContainer(TypedDict):
    ExitCode: int | None
    Reason: str


class AttemptDescription(TypedDict):
    Container: AttemptContainer
    StartedAt: int
    StoppedAt: int
    StatusReason: str


class ContainerDescription(TypedDict):
    Command: list[str]
    ExitCode: NotRequired[int | None]
    Reason: NotRequired[str]


class JobDescription(TypedDict):
    JobId: NotRequired[str]
    JobName: str
    JobQueue: str
    Status: str
    StatusReason: str
    CreatedAt: int
    StartedAt: int
    StoppedAt: int
    Container: ContainerDescription
    Attempts: list[AttemptDescription]


@dataclass(frozen=True)
class ExitRule:
    """One EvaluateOnExit entry: every condition it sets must match (glob patterns, as Batch's)."""

    action: str  # RETRY or EXIT
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None

    def matches(self, attempt: Attempt) -> bool:
        conditions = (
            (self.on_status_reason, attempt.status_reason),
            (self.on_reason, attempt.reason),
            (self.on_exit_code, "" if attempt.exit_code is None else str(attempt.exit_code)),
        )
        return all(fnmatch.fnmatchcase(value, pattern) for pattern, value in conditions if pattern is not None)


@dataclass(frozen=True)
class RetryStrategy:
    attempts: int = 1
    rules: tuple[ExitRule, ...] = ()

    @classmethod
    def from_template(cls, strategy: RetryStrategyTemplate | None) -> RetryStrategy:
        strategy = strategy or {}
        rules = tuple(
            ExitRule(
                action=str(rule["Action"]).upper(),
                on_status_reason=rule.get("OnStatusReason"),
                on_reason=rule.get("OnReason"),
                on_exit_code=rule.get("OnExitCode"),
            )
            for rule in strategy.get("EvaluateOnExit", [])
        )
        return cls(attempts=int(strategy.get("Attempts", 1)), rules=rules)

    def retries(self, attempt: Attempt) -> bool:
        """Batch's rule: the first matching entry decides; when none matches, the job is retried."""
        for rule in self.rules:
            if rule.matches(attempt):
                return rule.action == "RETRY"
        return True


@dataclass(frozen=True)
class TimeLimitAction:
    """One of the queue's JobStateTimeLimitActions."""

    reason: str
    max_seconds: float
    state: str = "RUNNABLE"
    action: str = "CANCEL"

    @classmethod
    def from_template(cls, entry: TimeLimitActionTemplate) -> TimeLimitAction:
        return cls(entry["Reason"], float(entry["MaxTimeSeconds"]), entry.get("State", "RUNNABLE"), entry["Action"])


@dataclass
class JobDefinition:
    """What the local runner needs from the template's job definition and job queue."""

    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    retry: RetryStrategy = field(default_factory=RetryStrategy)
    time_limit_actions: tuple[TimeLimitAction, ...] = ()


@dataclass(frozen=True)
class Attempt:
    exit_code: int | None
    status_reason: str
    started: float
    stopped: float
    reason: str = ""  # the container's own reason; Batch leaves it empty for a plain exit
    final: bool = False  # a timeout or a stop: Batch never retries those

    def describe(self) -> AttemptDescription:
        return {
            "Container": {"ExitCode": self.exit_code, "Reason": self.reason},
            "StartedAt": int(self.started * 1000),
            "StoppedAt": int(self.stopped * 1000),
            "StatusReason": self.status_reason,
        }


class WarmWorkers:
    """Job processes started ahead of their jobs, with the worker's imports done (standby.py): a job takes one
    and hands it its command, environment and log, instead of waiting about a second for Python to start and
    import. Each standby runs one job at most; taking one starts the next.

    They are all started from one thread of their own that lives as long as this object: a worker's parent-death
    signal fires when the thread that started it ends, and a job's thread ends with its job.
    """

    def __init__(self, count: int, limit: int | None = None) -> None:
        """`count` ready at a time; `limit` started in all, when the jobs to come are known (later ones start cold)."""
        self._left = limit
        self._ready: queue.Queue[subprocess.Popen[bytes]] = queue.Queue()
        self._wanted = threading.Semaphore(count)  # one release per standby to start
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._keep_warm, name="warm-workers", daemon=True)

    def start(self) -> WarmWorkers:
        self._thread.start()
        return self

    def take(self) -> subprocess.Popen[bytes] | None:
        """A standby that is still alive, now this caller's (the next one starts), or None when none is ready."""
        while True:
            try:
                proc = self._ready.get_nowait()
            except queue.Empty:
                return None
            self._wanted.release()
            if proc.poll() is None:
                return proc
            log.warning("a standby worker exited before its job (%s); trying another", proc.returncode)

    def close(self) -> None:
        """Stop starting standbys and end the unused ones (each exits at the end of its stdin)."""
        self._stopped.set()
        self._wanted.release()
        self._thread.join(timeout=10)
        while True:
            try:
                proc = self._ready.get_nowait()
            except queue.Empty:
                return
            if proc.stdin is not None:
                proc.stdin.close()
            kill_process_group(proc)

    def _keep_warm(self) -> None:
        while self._wanted.acquire() and not self._stopped.is_set():
            if self._left == 0:  # as many as the jobs to come; the thread stays, or the standbys' parent signal fires
                continue
            try:
                self._ready.put(_start_standby())
                self._left = None if self._left is None else self._left - 1
            except OSError as exc:  # no process to spare now: jobs start cold, as they did before
                log.warning("cannot start a standby worker: %s", exc)
                self._stopped.wait(1.0)
                self._wanted.release()


def _start_standby() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "codeclab.local.standby"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**_host_environment(), PARENT_PID_ENV: str(os.getpid())},
        start_new_session=True,
    )  # fmt: skip


def hand_job(proc: subprocess.Popen[bytes], order: JobOrder) -> None:
    """Give a standby its job: it reads one line, then runs it as `python -m codeclab.worker` would."""
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(order).encode() + b"\n")
    proc.stdin.close()


@dataclass
class LocalJobRunner:
    job_definition: JobDefinition
    emulator_environment: dict[str, str]  # credentials and endpoint of the emulator
    log_folder: Path  # each job's stdout and stderr; the worker's own worker.log is in its artifacts
    fault_plan: Callable[[], FaultPlan]  # the plan in force as a job starts
    durations: dict[str, float] = field(default_factory=dict)  # job wall time by experiment id, for benchmarks
    attempts: dict[str, int] = field(default_factory=dict)  # attempts each job took, by experiment id
    running: set[subprocess.Popen[bytes]] = field(default_factory=set)  # the workers alive now
    # As a compute environment's vCPUs do: at most this many workers at once, the others wait RUNNABLE. A burst
    # of experiments then queues instead of starting fifty Python processes on two cores.
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(job_slots()))
    warm: WarmWorkers | None = None  # standbys to run jobs in; without them each job starts Python cold

    def __call__(self, params: SubmitJobParameters, execution_ended: Callable[[], bool]) -> JobDescription:
        plan = self.fault_plan()
        overrides = params.get("ContainerOverrides") or {}
        command = list(overrides.get("Command") or self.job_definition.command)
        env = {**_host_environment(), **plan.worker_environment(), **self.emulator_environment,
               **self.job_definition.environment, **_pairs(overrides.get("Environment"))}  # fmt: skip
        attempt_seconds = float((params.get("Timeout") or {}).get("AttemptDurationSeconds") or 0) or None
        name = params.get("JobName", "local-job")
        experiment_id = env.get("CODECLAB_EXPERIMENT_ID", name)
        log.info("job %s: python -m codeclab.worker %s", name, " ".join(command))
        started = time.time()
        cancelled = self._wait_for_capacity(plan, execution_ended) or self._wait_for_slot(execution_ended)
        attempts: list[Attempt] = []
        if cancelled is None:
            try:
                for number in range(1, self.job_definition.retry.attempts + 1):
                    attempts.append(
                        self._attempt(command, env, attempt_seconds, execution_ended, plan.batch.loses_host(number))
                    )
                    last = attempts[-1]
                    if last.exit_code == 0 or last.final or not self.job_definition.retry.retries(last):
                        break
                    log.info("job %s: attempt %d ended (%s); retrying", name, number, last.status_reason)
            finally:
                self.slots.release()
        self.durations[experiment_id] = time.time() - started
        self.attempts[experiment_id] = len(attempts)
        return _description(name, params.get("JobQueue", ""), command, started, attempts, cancelled)

    def _wait_for_slot(self, execution_ended: Callable[[], bool]) -> str | None:
        """RUNNABLE until a slot frees (the slot is then this job's); the stop reason if the execution ends first."""
        while not self.slots.acquire(timeout=POLL_SECONDS):
            if execution_ended():
                return STOPPED_REASON
        return None

    def kill_all(self) -> None:
        """SIGKILL every running worker's process group (its codec children die with it)."""
        for proc in list(self.running):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def log_of(self, experiment_id: str) -> Path:
        return self.log_folder / f"{experiment_id}.log"

    def _wait_for_capacity(self, plan: FaultPlan, execution_ended: Callable[[], bool]) -> str | None:
        """With no capacity the job stays RUNNABLE: the queue cancels it at its limit (the reason returned)."""
        if not plan.batch.no_capacity:
            return None
        action = next(
            (a for a in self.job_definition.time_limit_actions
             if a.state == "RUNNABLE" and NO_CAPACITY_REASON.startswith(a.reason)),
            None,
        )  # fmt: skip
        # Without an action for this reason, the job waits until its execution ends, as on Batch.
        limit = (plan.runnable_seconds or action.max_seconds) if action else None
        deadline = time.monotonic() + limit if limit is not None else None
        while deadline is None or time.monotonic() < deadline:
            if execution_ended():
                return STOPPED_REASON
            time.sleep(POLL_SECONDS)
        assert action is not None  # only an action's deadline ends the wait
        return CANCELLED_REASON.format(reason=action.reason)

    def _attempt(
        self,
        command: list[str],
        env: dict[str, str],
        limit: float | None,
        execution_ended: Callable[[], bool],
        host_lost: float | None,
    ) -> Attempt:
        self.log_folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        experiment_id = env.get("CODECLAB_EXPERIMENT_ID", "job")
        # the worker's temporary files live in the job folder, which goes when this process ends (or, after a
        # kill -9, when the next command on the runs folder finds this process dead)
        tmp = self.log_folder / experiment_id / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for folder in (self.log_folder, tmp.parent, tmp):
            folder.chmod(0o711)  # a codec child with its own uid must still reach its scratch folder inside
        proc = self._start_worker(command, {**env, PARENT_PID_ENV: str(os.getpid()), "TMPDIR": str(tmp)},
                                  self.log_of(experiment_id))  # fmt: skip
        self.running.add(proc)
        try:
            exit_code, reason, final = self._watch(proc, limit, execution_ended, host_lost)
        finally:
            self.running.discard(proc)
        return Attempt(exit_code, reason, started, time.time(), final=final)

    def _start_worker(self, command: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
        """`python -m codeclab.worker COMMAND` in a session of its own: a standby if one is ready, else a new one."""
        standby = self.warm.take() if self.warm is not None else None
        if standby is not None:
            try:
                hand_job(standby, {"argv": command, "env": env, "log": str(log_file)})
                return standby
            except OSError as exc:  # it died as it was handed the job: start one cold
                log.warning("a standby worker refused its job (%s); starting the job cold", exc)
                kill_process_group(standby)
        with log_file.open("ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "codeclab.worker", *command], env=env, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def _watch(
        self,
        proc: subprocess.Popen[bytes],
        limit: float | None,
        execution_ended: Callable[[], bool],
        host_lost: float | None,
    ) -> tuple[int | None, str, bool]:
        now = time.monotonic()
        deadline = now + limit if limit else None
        lost_at = now + host_lost if host_lost is not None else None
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                stop_process_group(proc, STOP_GRACE_SECONDS)
                return None, TIMEOUT_REASON, True
            if execution_ended():
                stop_process_group(proc, STOP_GRACE_SECONDS)
                return None, STOPPED_REASON, True
            if lost_at is not None and time.monotonic() > lost_at:
                kill_process_group(proc)  # the instance is gone, and the container with it
                return None, HOST_LOST_REASON, False
            with suppress(subprocess.TimeoutExpired):  # returns as soon as it exits, not at the next poll
                proc.wait(timeout=POLL_SECONDS)
        return proc.returncode, EXITED_REASON, False


def _description(
    name: str, queue: str, command: list[str], started: float, attempts: list[Attempt], cancelled: str | None
) -> JobDescription:
    """DescribeJobs' view of the finished job, as the .sync integration returns it."""
    last = attempts[-1] if attempts else None
    succeeded = last is not None and last.exit_code == 0
    reason = cancelled or (last.status_reason if last else "")
    container: ContainerDescription = {"Command": command}
    if last is not None:
        container["ExitCode"], container["Reason"] = last.exit_code, last.reason
    return {
        "JobName": name,
        "JobQueue": queue,
        "Status": "SUCCEEDED" if succeeded else "FAILED",
        "StatusReason": reason,
        "CreatedAt": int(started * 1000),
        "StartedAt": int((attempts[0].started if attempts else started) * 1000),
        "StoppedAt": int(time.time() * 1000),
        "Container": container,
        "Attempts": [attempt.describe() for attempt in attempts],
    }


def job_slots() -> int:
    """How many local jobs run at once: CODECLAB_LOCAL_JOBS, else one per usable core."""
    return max(1, int(os.environ.get(JOB_SLOTS_ENV) or len(os.sched_getaffinity(0))))


def warm_worker_count(jobs: int | None = None) -> int:
    """CODECLAB_WARM_WORKERS, else one standby per job slot, two at most (each is an idle Python of about 100 MB),
    and no more than the jobs a process knows it will run: a standby starting beside the only job slows it."""
    value = os.environ.get(WARM_WORKERS_ENV)
    if value:
        return max(0, int(value))
    count = min(job_slots(), 2)
    return count if jobs is None else min(count, jobs)


def _host_environment() -> dict[str, str]:
    """This process's environment as the job starts (PATH, CUDA), less any real AWS settings and the fault
    switches: the fault plan decides what the worker gets."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in VARIABLES}


def _pairs(entries: list[NameValue] | None) -> dict[str, str]:
    """Batch's [{Name, Value}] (or the lower-case form Step Functions adds) as a dict."""
    return {e.get("Name", e.get("name", "")): str(e.get("Value", e.get("value", ""))) for e in entries or []}

"""runs/: the local system of record, and the one module that knows its layout.

    runs/<experiment_id>/record.json   the experiment's item, mirrored at every write to the table
    runs/<experiment_id>/owner.json    while it is not final: the local process that runs it
    runs/<experiment_id>/alerts.json   the alerts it raised
    runs/<experiment_id>/job.log       its local Batch job's output
    runs/<experiment_id>/...           the worker's artifacts (result.json, metrics.csv, the bitstream...)
    runs/reports/<id>/                 `codeclab report`'s output
    runs/.codeclab/processes/<pid>.json  each running `codeclab run` or `serve`: where its API answers

Every file is written whole or not at all (codeclab.atomic). A process is named by its pid and its
start time, so a pid the system has reused never passes for the process that died. `recover()`
finalises what a dead process left unfinished, so every experiment in runs/ ends final.

When runs/ cannot take a record (its disk is full), the record is parked in the user's state folder
($XDG_STATE_HOME/codeclab/unsaved, else ~/.local/state/codeclab/unsaved) and `recover()` moves it
into runs/ the next time any command runs there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from codeclab import atomic
from codeclab.experiments.error_types import ErrorType
from codeclab.experiments.record import ExperimentRecord, HistoryEntry, PointSummary, RecordError
from codeclab.experiments.statuses import Status

RECORD_FILE, OWNER_FILE, ALERTS_FILE, JOB_LOG, RESULT_FILE = (
    "record.json", "owner.json", "alerts.json", "job.log", "result.json",
)  # fmt: skip
REPORTS = "reports"
SCRATCH_PREFIX = "codeclab-jobs-"  # the temporary folder of a process's local jobs
_PROCESSES = Path(".codeclab") / "processes"


@dataclass(frozen=True)
class ProcessId:
    """A process, by pid and start time (clock ticks after boot): a reused pid has another start time."""

    pid: int
    started: int

    @classmethod
    def current(cls) -> ProcessId:
        return cls(os.getpid(), _start_ticks(os.getpid()) or 0)

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.started


@dataclass(frozen=True)
class Endpoint:
    """A running `codeclab run` or `serve`, and where its HTTP API answers."""

    url: str
    kind: str  # "run" or "serve"
    process: ProcessId
    started_at: float
    scratch: str  # its jobs' logs and temporary files, removed when it ends (or found dead)


class RunsFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- experiments ---------------------------------------------------------------------
    def folder(self, experiment_id: str) -> Path:
        """runs/<experiment_id>/; a name that is not one plain folder name is refused (it could lead out)."""
        if not _plain(experiment_id):
            raise ValueError(f"not an experiment id: {experiment_id[:80]!r}")
        return self.root / experiment_id

    def record(self, experiment_id: str) -> ExperimentRecord | None:
        return _read_record(self.folder(experiment_id) / RECORD_FILE) if _plain(experiment_id) else None

    def records(self) -> list[ExperimentRecord]:
        """Every experiment's record, newest first."""
        found = [_read_record(path) for path in self.root.glob(f"exp_*/{RECORD_FILE}")]
        return sorted((r for r in found if r), key=lambda r: r.get("timestamp", 0), reverse=True)

    def save_record(self, record: ExperimentRecord | PointSummary, owner: ProcessId | None = None) -> None:
        """Mirror the record; while it is not final, say which process runs it (written first)."""
        folder = self.folder(record["experiment_id"])
        folder.mkdir(parents=True, exist_ok=True)
        final = Status(record["status"]).is_final
        if owner is not None and not final:
            atomic.write_json(folder / OWNER_FILE, asdict(owner))
        atomic.write_json(folder / RECORD_FILE, record)
        if final:
            (folder / OWNER_FILE).unlink(missing_ok=True)

    def save_alerts(self, experiment_id: str, alerts: Sequence[Mapping[str, object]]) -> None:
        atomic.write_json(self.folder(experiment_id) / ALERTS_FILE, alerts)

    def owner(self, experiment_id: str) -> ProcessId | None:
        data = _read_json(self.folder(experiment_id) / OWNER_FILE)
        return ProcessId(int(data["pid"]), int(data["started"])) if data else None

    # -- the processes that run experiments ------------------------------------------------
    def register(self, url: str, kind: str, scratch: Path) -> Endpoint:
        endpoint = Endpoint(url, kind, ProcessId.current(), time.time(), str(scratch))
        path = self._process_file(endpoint.process.pid)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, asdict(endpoint))
        return endpoint

    def unregister(self, endpoint: Endpoint) -> None:
        self._process_file(endpoint.process.pid).unlink(missing_ok=True)

    def endpoints(self, kind: str | None = None) -> list[Endpoint]:
        """The live processes on this folder (newest first), `run`s and `serve`s or only one kind."""
        live = [e for e in self._registered() if e.process.alive() and kind in (None, e.kind)]
        return sorted(live, key=lambda e: e.started_at, reverse=True)

    def endpoint_of(self, experiment_id: str) -> Endpoint | None:
        """The live process that runs this experiment, if one does."""
        owner = self.owner(experiment_id)
        return next((e for e in self.endpoints() if e.process == owner), None)

    # -- when runs/ cannot take a record ---------------------------------------------------
    def park(self, record: ExperimentRecord) -> Path:
        """Keep a record runs/ could not take where the next command finds it. Raises OSError if nowhere can."""
        path = parked_folder() / f"{record['experiment_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, {"runs_dir": str(self.root.resolve()), "record": record})
        return path

    def _adopt_parked(self) -> list[str]:
        adopted = []
        for path in sorted(parked_folder().glob("exp_*.json")):
            data = _read_json(path)
            if not data or data.get("runs_dir") != str(self.root.resolve()):
                continue
            try:
                self.save_record(data["record"])
            except OSError:
                break  # still no room: they stay parked for a later command
            path.unlink()
            adopted.append(data["record"]["experiment_id"])
        return adopted

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Move parked records in, finalise every experiment whose process is gone, and forget dead processes;
        returns the ids finalised as lost."""
        self._adopt_parked()
        for endpoint in self._registered():
            if not endpoint.process.alive():
                scratch = Path(endpoint.scratch)
                if scratch.name.startswith(SCRATCH_PREFIX):  # never anything but a job folder of ours
                    shutil.rmtree(scratch, ignore_errors=True)
                with suppress(OSError):
                    self.unregister(endpoint)
        live = {e.process for e in self._registered()}
        finalised = []
        for record in self.records():
            if Status(record["status"]).is_final:
                continue
            owner = self.owner(record["experiment_id"])
            if (owner is not None and not owner.alive()) or (owner is None and not live):
                try:
                    self.save_record(lost(record, owner))
                except OSError:  # a read-only or full folder: reading it must still work; a later command retries
                    continue
                finalised.append(record["experiment_id"])
        return finalised

    def _registered(self) -> list[Endpoint]:
        found = []
        for path in (self.root / _PROCESSES).glob("*.json"):
            data = _read_json(path)
            if data:
                process = ProcessId(**data["process"])
                found.append(Endpoint(data["url"], data["kind"], process, data["started_at"], data.get("scratch", "")))
        return found

    def _process_file(self, pid: int) -> Path:
        return self.root / _PROCESSES / f"{pid}.json"


def lost(record: ExperimentRecord, owner: ProcessId | None) -> ExperimentRecord:
    """The record finalised ABORTED because the local process that ran it ended first."""
    now = int(time.time() * 1000)
    who = f"the local codeclab process (pid {owner.pid})" if owner else "the local codeclab process"
    error: RecordError = {
        "type": ErrorType.ORCHESTRATOR_LOST.value,
        "message": f"{who} that ran it ended before it did (killed, or the machine restarted); run it again",
        "cause": f"found {record['status']} in runs/ with no live process to finish it",
    }
    history: list[HistoryEntry] = [*record.get("history", []), {"status": Status.ABORTED.value, "at": now}]
    return {**record, "status": Status.ABORTED.value, "error": error, "history": history, "updated_at": now}


def _plain(name: str) -> bool:
    return name not in {"", ".", ".."} and "/" not in name and "\0" not in name and len(name) <= 255


def parked_folder() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "codeclab" / "unsaved"


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the parenthesised command


def _read_record(path: Path) -> ExperimentRecord | None:
    """A record.json; one that is not a record (cut short by hand, edited) is as good as none."""
    data = _read_json(path)
    if data is None or not isinstance(data.get("experiment_id"), str) or not isinstance(data.get("status"), str):
        return None
    return cast(ExperimentRecord, data)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

"""A sweep's progress, read from its points' records: counts by status, throughput, an ETA and the failed points.

Computed on read (by `codeclab run` while it follows a sweep, and by `codeclab status`), never written: the
parent item is not a counter that every point would update.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from codeclab.experiments.record import NOT_STARTED, ExperimentRecord, PointStatus, PointSummary, RecordProgress
from codeclab.experiments.state import ManifestPoint
from codeclab.experiments.statuses import Status

FAILED_SHOWN = 20  # failed points named in full; the counts cover the rest
FAILED_IN_LINE = 3  # on a progress bar's one line


@dataclass(frozen=True)
class FailedPoint:
    experiment_id: str
    label: str
    error_type: str


@dataclass(frozen=True)
class SweepProgress:
    total: int
    counts: dict[str, int]  # by status; points without a record yet count as QUEUED
    elapsed_seconds: float  # since the sweep went RUNNING
    failed: tuple[FailedPoint, ...]  # the first FAILED_SHOWN that did not succeed, by index

    @property
    def done(self) -> int:
        return sum(n for status, n in self.counts.items() if Status(status).is_final)

    @property
    def per_minute(self) -> float | None:
        return self.done * 60 / self.elapsed_seconds if self.done and self.elapsed_seconds > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        rate = self.per_minute
        return (self.total - self.done) * 60 / rate if rate else None

    def line(self) -> str:
        """e.g. `120/300 done: 118 SUCCEEDED, 2 FAILED; 8 RUNNING, 172 QUEUED; 40.1/min, ETA 4m 30s`."""
        final = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()) if Status(s).is_final)
        live = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()) if not Status(s).is_final)
        rate = f"{self.per_minute:.1f}/min, ETA {_duration(self.eta_seconds)}" if self.per_minute else "ETA unknown"
        return f"{self.done}/{self.total} done: {final or 'none'}; {live or 'nothing left'}; {rate}"

    def as_record_progress(self, updated_at: int) -> RecordProgress:
        """The shape a progress bar follows: points for frames, and the line (with the first failures) as its stage."""
        failures = "".join(f"; failed {f.experiment_id} {f.error_type}" for f in self.failed[:FAILED_IN_LINE])
        return {"stage": self.line() + failures, "frames_done": self.done, "frames_total": self.total,
                "updated_at": updated_at}  # fmt: skip


def sweep_progress(parent: ExperimentRecord, points: Iterable[PointStatus], now_ms: int) -> SweepProgress:
    """The progress of a sweep whose parent is `parent`, from every point record it has so far."""
    counts: Counter[str] = Counter()
    failed: list[FailedPoint] = []
    for point in sorted(points, key=lambda p: p.get("point_index", 0)):
        counts[point["status"]] += 1
        status = Status(point["status"])
        if status.is_final and status is not Status.SUCCEEDED and len(failed) < FAILED_SHOWN:
            error = point.get("error", {}).get("type", "")
            failed.append(FailedPoint(point["experiment_id"], point.get("point_label", ""), error))
    total = parent.get("point_count", 0)
    if total > counts.total():
        counts[Status.QUEUED.value] += total - counts.total()
    return SweepProgress(total, dict(counts), max(0, now_ms - _running_since(parent)) / 1000, tuple(failed))


def _running_since(parent: ExperimentRecord) -> int:
    running = [entry["at"] for entry in parent["history"] if entry["status"] == Status.RUNNING]
    return running[0] if running else parent["timestamp"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def point_rows(
    parent: ExperimentRecord, manifest: Iterable[ManifestPoint], records: Iterable[ExperimentRecord]
) -> list[ExperimentRecord | PointSummary]:
    """Each manifest point as it now stands: its own record, or the manifest's name for it until it has one
    (QUEUED while the sweep runs, NOT_STARTED once the sweep ended without starting it)."""
    by_id = {record["experiment_id"]: record for record in records}
    unstarted = NOT_STARTED if Status(parent["status"]).is_final else Status.QUEUED.value
    rows: list[ExperimentRecord | PointSummary] = []
    for m in manifest:
        summary: PointSummary = {"experiment_id": m["experiment_id"], "label": m["label"], "status": unstarted}
        rows.append(by_id.get(m["experiment_id"]) or summary)
    return rows

"""Finished experiments as the report reads them from runs/: one experiment, or a sweep's points.

A sweep's folder keeps its points manifest (points.json), which names its points; each point is an experiment of
its own in runs/<point id>/, once it has started. Points that did not succeed are kept, marked, so the report can say
which ones it left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codeclab.experiments.record import NOT_STARTED, ExperimentRecord
from codeclab.experiments.result import Result, ResultError, parse_result
from codeclab.experiments.schema import SpecDocument
from codeclab.experiments.state import MANIFEST_FILE, ManifestPoint
from codeclab.experiments.statuses import Status
from codeclab.local.runs import RECORD_FILE, RESULT_FILE, RunsFolder


class ReportError(Exception):
    """The report cannot be built as asked; the message names what is wrong and what to do."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    requested_as: str  # the id given to the report: the experiment itself or its sweep parent
    status: str
    spec: SpecDocument | None  # None for a sweep point whose folder never reached runs/
    result: Result | None  # the worker's result.json; present exactly when SUCCEEDED
    sweep_label: str | None = None  # e.g. "x264 crf=23", for a sweep's point

    @property
    def succeeded(self) -> bool:
        return self.status == Status.SUCCEEDED


def load_experiments(ids: Sequence[str], runs_dir: Path) -> list[Experiment]:
    """Every experiment the ids name, sweeps expanded to their points, each experiment once, in order."""
    runs = RunsFolder(runs_dir)
    loaded: dict[str, Experiment] = {}
    for requested_id in ids:
        record = _existing_record(requested_id, runs)
        found = _sweep_points(record, runs) if "point_count" in record else [_single(record, runs)]
        for experiment in found:
            loaded.setdefault(experiment.experiment_id, experiment)
    return list(loaded.values())


def is_saved(experiment_id: str, runs_dir: Path) -> bool:
    return RunsFolder(runs_dir).record(experiment_id) is not None


def _single(record: ExperimentRecord, runs: RunsFolder) -> Experiment:
    experiment_id = record["experiment_id"]
    if record["status"] != Status.SUCCEEDED:
        raise ReportError(
            f"{experiment_id} is {record['status']}, not SUCCEEDED, so it has no result to compare; "
            "leave it out of the ids"
        )
    result = _read_result(experiment_id, runs)
    return Experiment(experiment_id, experiment_id, record["status"], record.get("spec"), result)


def _sweep_points(parent: ExperimentRecord, runs: RunsFolder) -> list[Experiment]:
    """The points its manifest (kept beside the sweep's record) names, each as its own record says."""
    path = runs.folder(parent["experiment_id"]) / MANIFEST_FILE
    if not path.is_file():
        raise ReportError(
            f"sweep {parent['experiment_id']} has no {path}, which names its points; collect the sweep again "
            f"into {runs.root}"
        )
    manifest: list[ManifestPoint] = json.loads(path.read_text(encoding="utf-8"))
    return [_sweep_point(parent["experiment_id"], point, runs) for point in manifest]


def _sweep_point(parent_id: str, point: ManifestPoint, runs: RunsFolder) -> Experiment:
    point_id, label = point["experiment_id"], point["label"]
    record = runs.record(point_id)
    status = record["status"] if record else NOT_STARTED
    if status != Status.SUCCEEDED:
        spec = record.get("spec") if record else None
        return Experiment(point_id, parent_id, status, spec, None, label)
    return Experiment(point_id, parent_id, status, record.get("spec") if record else None,
                      _read_result(point_id, runs), label)  # fmt: skip


def _read_result(experiment_id: str, runs: RunsFolder) -> Result:
    path = runs.folder(experiment_id) / RESULT_FILE
    if not path.is_file():
        raise ReportError(
            f"{experiment_id} SUCCEEDED but {path} is missing; the report needs the worker's result.json "
            "(it holds the test conditions and the environment)"
        )
    try:
        result = parse_result(path.read_bytes(), str(path))
    except ResultError as exc:
        raise ReportError(f"{experiment_id}: {exc}; collect the experiment again") from None
    if result["status"] != "SUCCEEDED":
        raise ReportError(f"{experiment_id}: {path} says {result['status']}, but its record says SUCCEEDED")
    return result


def _existing_record(experiment_id: str, runs: RunsFolder) -> ExperimentRecord:
    record = runs.record(experiment_id)
    if record is None:
        raise ReportError(
            f"no experiment {experiment_id[:80]} in {runs.root} (no readable {RECORD_FILE} for it); "
            f"run `codeclab list --runs-dir {runs.root}` to see ids"
        )
    return record

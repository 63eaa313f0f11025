"""Finished experiments as the report reads them from runs/: one experiment, or a sweep's points.

A sweep parent's record lists its points; each point is an experiment of its own in
runs/<point id>/. Points that did not succeed are kept, marked, so the report can say
which ones it left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeclab.experiments.statuses import Status

# The names codeclab.local.runner and the worker write; importing the runner would load the AWS emulator.
RECORD_FILE, RESULT_FILE = "record.json", "result.json"


class ReportError(Exception):
    """The report cannot be built as asked; the message names what is wrong and what to do."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    requested_as: str  # the id given to the report: the experiment itself or its sweep parent
    status: str
    spec: dict[str, Any] | None  # None for a sweep point whose folder never reached runs/
    result: dict[str, Any] | None  # the worker's result.json; present exactly when SUCCEEDED
    sweep_label: str | None = None  # e.g. "x264 crf=23", for a sweep's point

    @property
    def succeeded(self) -> bool:
        return self.status == Status.SUCCEEDED


def load_experiments(ids: Sequence[str], runs_dir: Path) -> list[Experiment]:
    """Every experiment the ids name, sweeps expanded to their points, each experiment once, in order."""
    loaded: dict[str, Experiment] = {}
    for requested_id in ids:
        record = _read_json(_existing_record(requested_id, runs_dir), requested_id)
        found = _sweep_points(record, runs_dir) if "points" in record else [_single(record, runs_dir)]
        for experiment in found:
            loaded.setdefault(experiment.experiment_id, experiment)
    return list(loaded.values())


def is_saved(experiment_id: str, runs_dir: Path) -> bool:
    return _is_plain_name(experiment_id) and (runs_dir / experiment_id / RECORD_FILE).is_file()


def _single(record: dict[str, Any], runs_dir: Path) -> Experiment:
    experiment_id = record["experiment_id"]
    if record["status"] != Status.SUCCEEDED:
        raise ReportError(
            f"{experiment_id} is {record['status']}, not SUCCEEDED, so it has no result to compare; "
            "leave it out of the ids"
        )
    result = _read_result(experiment_id, runs_dir)
    return Experiment(experiment_id, experiment_id, record["status"], record.get("spec"), result)


def _sweep_points(parent: dict[str, Any], runs_dir: Path) -> list[Experiment]:
    return [_sweep_point(parent["experiment_id"], point, runs_dir) for point in parent["points"]]


def _sweep_point(parent_id: str, point: dict[str, Any], runs_dir: Path) -> Experiment:
    point_id, label = point["experiment_id"], point.get("label")
    path = runs_dir / point_id / RECORD_FILE
    # The point's own record is newer than the parent's copy of its status.
    record = _read_json(path, point_id) if is_saved(point_id, runs_dir) else None
    status = record["status"] if record else point.get("status", "UNKNOWN")
    if status != Status.SUCCEEDED:
        spec = record.get("spec") if record else None
        return Experiment(point_id, parent_id, status, spec, None, label)
    if record is None:
        raise ReportError(
            f"sweep {parent_id} lists point {point_id} as SUCCEEDED but {path} is missing; "
            f"collect the sweep again into {runs_dir}"
        )
    return Experiment(point_id, parent_id, status, record.get("spec"), _read_result(point_id, runs_dir), label)


def _read_result(experiment_id: str, runs_dir: Path) -> dict[str, Any]:
    path = runs_dir / experiment_id / RESULT_FILE
    if not path.is_file():
        raise ReportError(
            f"{experiment_id} SUCCEEDED but {path} is missing; the report needs the worker's result.json "
            "(it holds the test conditions and the environment)"
        )
    return _read_json(path, experiment_id)


def _existing_record(experiment_id: str, runs_dir: Path) -> Path:
    path = runs_dir / experiment_id / RECORD_FILE
    if not is_saved(experiment_id, runs_dir):
        raise ReportError(
            f"no experiment {experiment_id} in {runs_dir} (no {path}); "
            f"run `codeclab list --runs-dir {runs_dir}` to see ids"
        )
    return path


def _is_plain_name(experiment_id: str) -> bool:
    """An id names one folder directly under runs/, never a path out of it."""
    return experiment_id not in {"", ".", ".."} and Path(experiment_id).name == experiment_id


def _read_json(path: Path, experiment_id: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{experiment_id}: {path} is not valid JSON ({exc}); collect the experiment again") from None

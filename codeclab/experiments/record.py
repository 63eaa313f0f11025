"""An experiment's record: the one item the table keeps under its composite key, mirrored locally as record.json.

Written only through ExperimentStore; read by the API, the CLI, the report and runs/.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from codeclab.experiments.result import Conditions, Measurement


class HistoryEntry(TypedDict):
    status: str
    at: int  # epoch ms


class RecordProgress(TypedDict):
    stage: str
    frames_done: int
    frames_total: int
    updated_at: int


class RecordError(TypedDict):
    type: str  # an ErrorType
    message: str
    cause: str


NOT_STARTED = "NOT_STARTED"  # a point's row, not a Status: its sweep ended before the point got a record


class PointSummary(TypedDict):
    """A point as its sweep's manifest names it, shown until the point has a record of its own."""

    experiment_id: str
    label: str
    status: str  # QUEUED while the sweep runs, NOT_STARTED once it ended


class SweepCounts(TypedDict):
    """A sweep's outcome, aggregated once at its end from its points' records."""

    points: int
    succeeded: int
    failed: int  # ended in any other final status
    not_started: int  # no record: the sweep ended before the point's child execution created one


class ExperimentRecord(TypedDict):
    experiment_id: str
    timestamp: int  # epoch ms of creation: the sort key
    status: str  # a Status
    # A checked SpecDocument; for an execution that ended before CreateRecord could check its input, that
    # input as it was submitted (the record must exist all the same), so this one field stays open.
    spec: Any
    history: list[HistoryEntry]
    updated_at: int
    execution_arn: NotRequired[str]
    codec: NotRequired[str | None]  # "sweep" for a sweep's parent
    job_id: NotRequired[str]
    progress: NotRequired[RecordProgress]
    result: NotRequired[Measurement | SweepCounts]  # a point's measurement, or a sweep's counts
    conditions: NotRequired[Conditions]
    artifacts: NotRequired[dict[str, str]]
    error: NotRequired[RecordError]
    # A sweep's parent points to its manifest and counts its points; each point names its parent.
    manifest_uri: NotRequired[str]
    point_count: NotRequired[int]
    parent_id: NotRequired[str]
    point_label: NotRequired[str]
    point_index: NotRequired[int]


class PointStatus(TypedDict):
    """What a sweep's progress reads of each point: its key, status, place and error, not its spec or result.

    An ExperimentRecord is one too, so the progress of points read whole is the same computation.
    """

    experiment_id: str
    timestamp: int
    status: str
    point_index: NotRequired[int]
    point_label: NotRequired[str]
    error: NotRequired[RecordError]

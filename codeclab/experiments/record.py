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


class PointSummary(TypedDict):
    """A sweep's view of one of its points: its key and label, and once the sweep ends, its outcome."""

    experiment_id: str
    timestamp: int
    label: str
    status: str
    error_type: NotRequired[str]
    bpp: NotRequired[float]
    psnr_yuv: NotRequired[float]


class SweepCounts(TypedDict):
    points: int
    succeeded: int
    failed: int


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
    # A sweep's parent lists its points; each point names its parent.
    points: NotRequired[list[PointSummary]]
    parent_id: NotRequired[str]
    point_label: NotRequired[str]
    point_index: NotRequired[int]

"""`runner.wait` follows a run from the table's writes as they land (runner.Follower), not by reading every point
of a sweep again at every tick (issue 18: at 16 points that added a third to the execution time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend

from codeclab.experiments.record import ExperimentRecord
from codeclab.experiments.store import PARENT_INDEX
from codeclab.local import runner
from codeclab.local.emulator import LocalCloud

POINTS = 4


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


def test_a_sweeps_progress_comes_from_its_writes_with_no_query_of_its_points_per_tick(
    cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries: list[str] = []
    query = DynamoDBBackend.query  # moto's, with the emulator's lock around it

    def counted(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("index_name") == PARENT_INDEX:
            queries.append(str(kwargs.get("index_name")))
        return query(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "query", counted)
    shown: list[ExperimentRecord] = []
    spec = {"name": "events", "source": {"clip": "builtin:carphone", "frames": 1}, "codec": {"name": "jpeg"},
            "metrics": {"vmaf": False}, "sweep": {"quality": [20, 40, 60, 80], "max_concurrency": 2}}  # fmt: skip
    outcome = runner.run(cloud, spec, tmp_path, shown.append)
    assert outcome.succeeded
    progress = [record["progress"] for record in shown if "progress" in record]
    assert progress, "the sweep's progress was never shown"
    # the last tick saw every point SUCCEEDED, from the writes alone
    assert progress[-1]["frames_done"] == POINTS and progress[-1]["frames_total"] == POINTS
    ticks = len(shown)
    # one query of the points to start from, and the workflow's own (its aggregation): never one a tick
    assert len(queries) < ticks, (len(queries), ticks)
    assert len(queries) <= 4, queries

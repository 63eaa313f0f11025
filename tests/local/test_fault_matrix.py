"""`make faults` as tests: every row of the matrix, injected into a real local workflow run, ends final and correct."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codeclab.local.emulator import LocalCloud
from codeclab.local.fault_matrix import FAULTS, Fault, run_fault


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_the_fault_ends_final_and_correct(cloud: LocalCloud, fault: Fault, tmp_path: Path) -> None:
    row = run_fault(cloud, fault, tmp_path)
    assert (row.status, row.error_type) == (fault.expected_status, fault.expected_type)
    assert row.alerts == (0 if fault.expected_status == "SUCCEEDED" else 1), "exactly one alert per failure"
    assert row.in_store and row.in_runs, "the record is lost"
    assert row.injected == sum(f.times for f in fault.plan.aws), "the AWS fault did not fire as planned"
    assert fault.attempts in (None, row.attempts), f"the job took {row.attempts} attempts"
    assert row.correct

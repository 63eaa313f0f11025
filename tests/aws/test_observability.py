"""The handlers trace with X-Ray in the Lambda runtime only: elsewhere no Tracer is made, and X-Ray's SDK core is
not imported (0.25 s of every local start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """\
import json, sys
import observability
print(json.dumps([type(observability.tracer).__name__, "aws_xray_sdk.core" in sys.modules]))
"""


def _probe(**env: str) -> list[object]:
    clean = {k: v for k, v in os.environ.items() if k not in {"LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED"}}
    pythonpath = os.pathsep.join([str(REPO / "lambdas"), str(REPO)])
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env, "PYTHONPATH": pythonpath},
                         capture_output=True, text=True, check=True, timeout=120).stdout  # fmt: skip
    return list(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["NoneType", False]),  # local mode, the tests: no runtime
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, ["NoneType", False]),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, ["Tracer", True]),  # on AWS: traced, and the import is paid
    ],
)
def test_a_tracer_is_made_only_where_it_traces(env: dict[str, str], expected: list[object]) -> None:
    assert _probe(**env) == expected

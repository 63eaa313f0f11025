"""One synthesis of the Codeclab stack per test session (about 7 s), shared by every infra test."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.synthesis import Synthesized, synthesize


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def definition(synth: Synthesized) -> dict[str, Any]:
    """The state machine's ASL, with every CloudFormation token replaced by a placeholder string."""
    _, machine = synth.only("AWS::StepFunctions::StateMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else "${Token}" for part in parts))

"""The fault plan: each switch's syntax, the messages for values it cannot take, and the counting of faults."""

from __future__ import annotations

import pytest

from codeclab.local.faults import (
    BATCH_FAULT_ENV,
    LAMBDA_FAULT_ENV,
    RUNNABLE_SECONDS_ENV,
    SYNTAX,
    VARIABLES,
    WORKER_FAULT_ENV,
    AwsFault,
    BatchFault,
    FaultPlan,
    FaultPlanError,
    FaultState,
    LambdaFault,
)
from codeclab.worker.faults import Fault, parse_fault


def test_no_switch_set_is_the_empty_plan_of_a_normal_run() -> None:
    assert FaultPlan.from_environment({}) == FaultPlan()
    assert FaultPlan.from_environment(dict.fromkeys(SYNTAX, "  ")) == FaultPlan()
    assert FaultPlan().worker_environment() == {}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (WORKER_FAULT_ENV, "crash:encode@1", FaultPlan(worker=Fault("crash", "encode", 1))),
        (WORKER_FAULT_ENV, "slow:encode:0.5", FaultPlan(worker=Fault("slow", "encode", seconds=0.5))),
        (WORKER_FAULT_ENV, "hang:decode@3:2", FaultPlan(worker=Fault("hang", "decode", 3, 2.0))),
        (LAMBDA_FAULT_ENV, "record_result", FaultPlan(lambda_fault=LambdaFault("record_result"))),
        (LAMBDA_FAULT_ENV, "reconcile:1", FaultPlan(lambda_fault=LambdaFault("reconcile", 1))),
        (BATCH_FAULT_ENV, "no-capacity", FaultPlan(batch=BatchFault(no_capacity=True))),
        (BATCH_FAULT_ENV, "host-lost:1", FaultPlan(batch=BatchFault(hosts_lost=1))),
        (BATCH_FAULT_ENV, "host-lost:3:0.5", FaultPlan(batch=BatchFault(hosts_lost=3, lost_after_seconds=0.5))),
        (RUNNABLE_SECONDS_ENV, "2", FaultPlan(runnable_seconds=2.0)),
        (RUNNABLE_SECONDS_ENV, " 0.5 ", FaultPlan(runnable_seconds=0.5)),
    ],
)
def test_each_switch_reads_its_syntax(name: str, value: str, expected: FaultPlan) -> None:
    assert FaultPlan.from_environment({name: value}) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (WORKER_FAULT_ENV, "crash"),
        (WORKER_FAULT_ENV, "explode:encode@1"),
        (WORKER_FAULT_ENV, "slow:encode:1.2.3"),
        (LAMBDA_FAULT_ENV, "record_result:x"),
        (LAMBDA_FAULT_ENV, "reconcile:0"),
        (LAMBDA_FAULT_ENV, "lambdas/reconcile.py"),
        (BATCH_FAULT_ENV, "host-lost"),
        (BATCH_FAULT_ENV, "no_capacity"),
        (BATCH_FAULT_ENV, "host-lost:1:soon"),
        (RUNNABLE_SECONDS_ENV, "0"),
        (RUNNABLE_SECONDS_ENV, "-2"),
        (RUNNABLE_SECONDS_ENV, "2s"),
    ],
)
def test_a_value_a_switch_cannot_take_is_refused_naming_the_variable_and_its_syntax(name: str, value: str) -> None:
    with pytest.raises(FaultPlanError) as refused:
        FaultPlan.from_environment({name: value})
    assert str(refused.value) == f"{name}={value!r} is not {SYNTAX[name]}"


def test_the_syntax_in_messages_shows_an_example_of_each_switch() -> None:
    for name, syntax in SYNTAX.items():
        example = syntax.rsplit("e.g. ", 1)[1].split(" ")[0].rstrip(")")
        assert FaultPlan.from_environment({name: example}) != FaultPlan(), name


@pytest.mark.parametrize("text", ["crash:encode", "kill:encode@2", "slow:encode:0.5", "hang:decode@3:1.25"])
def test_the_worker_gets_the_fault_as_text_that_parses_back(text: str) -> None:
    plan = FaultPlan(worker=parse_fault(text))
    assert plan.worker_environment() == {WORKER_FAULT_ENV: text}
    assert FaultPlan.from_environment(plan.worker_environment()) == plan


def test_a_lost_host_hits_only_the_first_attempts() -> None:
    fault = BatchFault(hosts_lost=2, lost_after_seconds=1.5)
    assert [fault.loses_host(n) for n in (1, 2, 3)] == [1.5, 1.5, None]


def test_the_plan_in_force_is_the_environments_unless_one_is_injected(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    state = FaultState()
    monkeypatch.setenv(LAMBDA_FAULT_ENV, "record_result")
    assert state.plan() == FaultPlan(lambda_fault=LambdaFault("record_result"))
    injected = FaultPlan(batch=BatchFault(no_capacity=True))
    with state.injecting(injected):
        assert state.plan() == injected
    monkeypatch.setenv(LAMBDA_FAULT_ENV, "create_record")  # read when asked: a shell may switch between runs
    assert state.plan() == FaultPlan(lambda_fault=LambdaFault("create_record"))


def test_a_counted_lambda_fault_fails_only_the_first_invocations_of_its_handler() -> None:
    state = FaultState()
    with state.injecting(FaultPlan(lambda_fault=LambdaFault("reconcile", 2))):
        assert not state.lambda_fails("record_result")
        assert [state.lambda_fails("reconcile") for _ in range(3)] == [True, True, False]
    with state.injecting(FaultPlan(lambda_fault=LambdaFault("reconcile", 2))):  # a new plan counts from zero
        assert state.lambda_fails("reconcile")
    with state.injecting(FaultPlan(lambda_fault=LambdaFault("reconcile"))):
        assert all(state.lambda_fails("reconcile") for _ in range(5))


def test_aws_faults_are_spent_call_by_call_and_none_outlives_its_plan() -> None:
    state = FaultState()
    throttled = AwsFault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", times=2)
    with state.injecting(FaultPlan(aws=(throttled, AwsFault("sns", "Publish", "InternalError")))):
        assert state.take_aws("dynamodb", "UpdateItem") is None
        assert [state.take_aws("dynamodb", "PutItem") for _ in range(3)] == [throttled, throttled, None]
    assert state.take_aws("sns", "Publish") is None
    assert state.aws_fired == ["dynamodb.PutItem ProvisionedThroughputExceededException"] * 2

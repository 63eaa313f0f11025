"""The local Batch's rules: exit evaluation of the retry strategy."""

from __future__ import annotations

from codeclab.local.jobs import EXITED_REASON, HOST_LOST_REASON, Attempt, RetryStrategy

# What the synthesized job definition carries (tests/infra checks the template side).
STACK_STRATEGY = {
    "Attempts": 3,
    "EvaluateOnExit": [{"Action": "RETRY", "OnStatusReason": "Host EC2*"}, {"Action": "EXIT", "OnReason": "*"}],
}


def attempt(exit_code: int | None, status_reason: str, reason: str = "") -> Attempt:
    return Attempt(exit_code, status_reason, started=0.0, stopped=1.0, reason=reason)


def test_a_lost_host_is_retried_and_a_worker_exit_is_not() -> None:
    strategy = RetryStrategy.from_template(STACK_STRATEGY)
    assert strategy.attempts == 3
    assert strategy.retries(attempt(None, HOST_LOST_REASON))
    for code in (2, 3, 4, 5, 137):
        assert not strategy.retries(attempt(code, EXITED_REASON)), code


def test_no_matching_rule_means_retry_as_batch_does() -> None:
    strategy = RetryStrategy.from_template({"Attempts": 2, "EvaluateOnExit": [{"Action": "EXIT", "OnExitCode": "4*"}]})
    assert not strategy.retries(attempt(4, EXITED_REASON))
    assert strategy.retries(attempt(1, EXITED_REASON))


def test_every_condition_of_a_rule_must_match() -> None:
    strategy = RetryStrategy.from_template(
        {"Attempts": 2, "EvaluateOnExit": [
            {"Action": "EXIT", "OnExitCode": "1", "OnStatusReason": "Essential*"},
            {"Action": "RETRY", "OnReason": "*"},
        ]}
    )  # fmt: skip
    assert not strategy.retries(attempt(1, EXITED_REASON))
    assert strategy.retries(attempt(1, "something else"))


def test_without_a_strategy_there_is_one_attempt() -> None:
    assert RetryStrategy.from_template(None).attempts == 1

"""Powertools objects shared by the handlers: structured logs, X-Ray traces, EMF metrics."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

from codeclab.experiments.redaction import without_caller_credentials


def _traced_here() -> bool:
    """Powertools' rule for X-Ray: trace in the Lambda runtime, unless POWERTOOLS_TRACE_DISABLED says not. Elsewhere
    (local mode, the tests) no Tracer is made: making one imports X-Ray's SDK core (0.25 s of every local start) only
    to switch it off."""
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")
    return in_lambda and not resolve_truthy_env_var_choice(env=os.environ.get("POWERTOOLS_TRACE_DISABLED", "false"))


logger = Logger()
tracer = Tracer() if _traced_here() else None
metrics = Metrics()


def count(name: str, codec: str | None) -> None:
    """One of Started, Succeeded or Failed, by codec."""
    metrics.add_dimension("codec", codec or "unknown")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


Event = TypeVar("Event")  # each handler's own typed event (codeclab.experiments.state), or API Gateway's
Outcome = TypeVar("Outcome")


def observed(
    correlation_id_path: str | None = None,
) -> Callable[[Callable[[Event, Any], Outcome]], Callable[[Event, Any], Outcome]]:
    """Structured logs with the experiment id as correlation id, a trace, and metrics flushed per call.

    The event is passed on without the caller's credentials: Powertools logs or prints whole events when
    POWERTOOLS_LOGGER_LOG_EVENT or POWERTOOLS_DEV is set, and an API event carries the caller's signed headers.
    """

    def wrap(handler: Callable[[Event, Any], Outcome]) -> Callable[[Event, Any], Outcome]:
        measured = metrics.log_metrics(handler)
        traced = tracer.capture_lambda_handler(measured) if tracer is not None else measured
        logged = logger.inject_lambda_context(traced, correlation_id_path=correlation_id_path)

        @functools.wraps(handler)
        def redacted(event: Event, context: Any) -> Outcome:
            return cast(Outcome, logged(without_caller_credentials(event), context))

        return redacted

    return wrap

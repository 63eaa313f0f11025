"""Powertools objects shared by the handlers: structured logs, X-Ray traces, EMF metrics."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def count(name: str, codec: str | None) -> None:
    """One of Started, Succeeded or Failed, by codec."""
    metrics.add_dimension("codec", codec or "unknown")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)

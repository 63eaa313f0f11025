"""The AWS clients and settings that the workflow steps and the API use, built once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from codeclab.experiments.aws_clients import client as aws_client
from codeclab.experiments.limits import MIN_JOB_SECONDS, CodecCaps, codec_caps
from codeclab.experiments.result import AnyResult, parse_result
from codeclab.experiments.s3_uri import split_s3_uri
from codeclab.experiments.store import ExperimentStore

DEFAULT_MAX_TIMEOUT_SECONDS = 21600
DEFAULT_RUNNABLE_TIMEOUT_SECONDS = 1800
DEFAULT_MAX_SWEEP_CONCURRENCY = 4


# Set by local mode only: the API and CreateRecord then take a codec package at a local path too.
LOCAL_PACKAGES_ENV = "CODECLAB_LOCAL_PACKAGES"


@dataclass
class Services:
    store: ExperimentStore
    bucket: str
    state_machine_arn: str = ""
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS
    runnable_timeout_seconds: int = DEFAULT_RUNNABLE_TIMEOUT_SECONDS
    min_job_seconds: int = MIN_JOB_SECONDS
    alert_topic_arn: str = ""
    notify_on_success: bool = False
    # The compute environment's room in jobs (its max vCPUs over a job's): a sweep's concurrency never exceeds it.
    max_sweep_concurrency: int = DEFAULT_MAX_SWEEP_CONCURRENCY
    # Local mode: the worker runs on this machine, so a codec package may be a local path; on AWS, s3:// only.
    local_packages: bool = False
    # The operator's caps on a spec's limits.codec, as the stack gives them to the worker's job. None: not known to
    # this process (a stack deployed before it published them); CreateRecord and the worker still check them.
    codec_caps: CodecCaps | None = None
    s3: Any = field(default_factory=lambda: aws_client("s3"))
    sfn: Any = field(default_factory=lambda: aws_client("stepfunctions"))
    sns: Any = field(default_factory=lambda: aws_client("sns"))

    @classmethod
    def from_environment(cls) -> Services:
        """Read the Lambda environment that the CDK stack sets."""
        env = os.environ
        return cls(
            store=ExperimentStore(env["TABLE_NAME"]),
            bucket=env["ARTIFACT_BUCKET"],
            state_machine_arn=env.get("STATE_MACHINE_ARN", ""),
            max_timeout_seconds=int(env.get("MAX_TIMEOUT_SECONDS", DEFAULT_MAX_TIMEOUT_SECONDS)),
            runnable_timeout_seconds=int(env.get("RUNNABLE_TIMEOUT_SECONDS", DEFAULT_RUNNABLE_TIMEOUT_SECONDS)),
            min_job_seconds=int(env.get("MIN_JOB_SECONDS", MIN_JOB_SECONDS)),
            alert_topic_arn=env.get("ALERT_TOPIC_ARN", ""),
            notify_on_success=env.get("NOTIFY_ON_SUCCESS", "false").lower() == "true",
            max_sweep_concurrency=int(env.get("MAX_SWEEP_CONCURRENCY", DEFAULT_MAX_SWEEP_CONCURRENCY)),
            local_packages=env.get(LOCAL_PACKAGES_ENV) == "true",
            codec_caps=codec_caps(env),
        )

    def artifact_prefix(self, experiment_id: str) -> str:
        return f"s3://{self.bucket}/experiments/{experiment_id}"

    def read_result(self, uri: str) -> AnyResult | None:
        """The worker's result.json at an s3:// URI, checked; None when it does not exist."""
        bucket, key = split_s3_uri(uri)
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return parse_result(body, uri)

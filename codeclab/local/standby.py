"""`python -m codeclab.local.standby`: a local Batch job's process, started before its job with the worker's
imports done (jobs.WarmWorkers starts it). It waits for one job on stdin, then becomes that job's worker:
its environment, its log on stdout and stderr, its arguments, as `python -m codeclab.worker` would start.

A job's process therefore costs no Python start-up and no imports (about 1 s of a one-frame job), and each
job still has a process of its own that runs nothing else, before or after. An unused standby exits at the
end of its stdin, and dies with the process that started it, as a worker does.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from typing import TypedDict

from codeclab.fast_exit import skip_final_collections
from codeclab.worker.processes import PARENT_PID_ENV, die_with_parent

# What most jobs import on their own: PyAV reads the built-in and mp4 clips, boto3 the emulator's S3 and table.
PRELOADED = ("codeclab.worker.entrypoint", "av", "boto3", "botocore.exceptions", "codeclab.experiments.store")
MODELS = {"s3": ("service-2", "endpoint-rule-set-1"), "dynamodb": ("service-2", "endpoint-rule-set-1", "resources-1")}


class JobOrder(TypedDict):
    """The one line a standby reads: what `python -m codeclab.worker ARGV` would get, and where its output goes."""

    argv: list[str]
    env: dict[str, str]
    log: str


def main() -> int:
    die_with_parent(int(os.environ[PARENT_PID_ENV]))  # idle or working, it goes with its orchestrator
    for module in PRELOADED:
        importlib.import_module(module)
    from codeclab.worker.metrics.ssim import load_kernel  # here, not above: jobs.py imports this module for JobOrder

    load_kernel()  # every job measures SSIM: numba and the compiled kernel take 0.6 s to load
    _load_models()
    line = sys.stdin.buffer.readline()
    if not line:  # closed unused: the orchestrator is stopping
        return 0
    order: JobOrder = json.loads(line)
    become(order)
    from codeclab.worker.entrypoint import main as worker_main

    return worker_main(order["argv"])


def _load_models() -> None:
    """boto3's default session, with the models a job's clients read already parsed (S3 for its spec and artifacts,
    DynamoDB for its progress). Nothing else is resolved yet: credentials, region and endpoint are read from the
    job's environment when its clients are made."""
    import boto3

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    loader = boto3.DEFAULT_SESSION._session.get_component("data_loader")
    for service, kinds in MODELS.items():
        for kind in kinds:
            loader.load_service_model(service, kind)


def become(order: JobOrder) -> None:
    """Take the job's environment and output, as a process started for it would have them."""
    os.environ.clear()
    os.environ.update(order["env"])
    tempfile.tempdir = None  # read again from the job's TMPDIR
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(order["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    sys.argv = ["codeclab.worker", *order["argv"]]


if __name__ == "__main__":
    skip_final_collections()
    sys.exit(main())

"""boto3 clients made once per process, per service and per endpoint, region and credentials in the environment.

Making a client costs 5-10 ms once botocore has loaded its service's model (the first one of a service, 10-60 ms):
more than most calls to the local emulator take. Every Lambda handler module made three at import, and local mode
runs the seven in one process; a job made one for its spec, one for its outputs and one for each S3 read. Clients
are thread-safe; making one from boto3's default session is not, so they are made under a lock.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3

# What a client binds when it is made: a change of any of these (another local emulator) gets a new client.
BOUND_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID")

_made: dict[tuple[str, ...], Any] = {}
_lock = threading.Lock()


def client(service: str) -> Any:
    """This process's client of `service` for the endpoint, region and credentials its environment names now."""
    key = (service, *(os.environ.get(name, "") for name in BOUND_ENV))
    with _lock:
        if key not in _made:
            _made[key] = boto3.client(service)
        return _made[key]


def forget() -> None:
    """Drop every client made so far: a local emulator that stops takes its endpoint and its event hooks with it."""
    with _lock:
        _made.clear()

"""The clients the `codeclab` command talks to: one seam (`base.ExperimentsClient`), two backends."""

from __future__ import annotations

from pathlib import Path

from codeclab.clients.base import ExperimentsClient
from codeclab.clients.local import LocalClient


def open_client(runs_dir: Path, stack: str | None = None) -> ExperimentsClient:
    """The deployed stack's client for `--stack NAME`, else local mode's on `--runs-dir`."""
    if not stack:
        return LocalClient(runs_dir)
    from codeclab.clients.stack import connect  # boto3's import is heavy: only --stack pays

    return connect(stack)

"""Where a run's files go: a local folder or an s3:// prefix, behind one small interface.

Files are written into `staging` first, then published one by one; result.json is
published last, so its presence means the run's artifacts are complete.
"""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from codeclab.experiments.s3_uri import split_s3_uri


class ArtifactStore(ABC):
    staging: Path

    @abstractmethod
    def uri(self, name: str) -> str: ...

    @abstractmethod
    def publish(self, name: str) -> str:
        """Make staging/name durable at its final place; return its URI."""

    def close(self) -> None:  # noqa: B027 - a no-op unless the store stages in a temp folder
        """Release the staging area once everything is published."""


class LocalStore(ArtifactStore):
    """Writes straight into the output folder, so publishing is free."""

    def __init__(self, folder: Path) -> None:
        self.staging = folder.resolve()
        self.staging.mkdir(parents=True, exist_ok=True)

    def uri(self, name: str) -> str:
        return str(self.staging / name)

    def publish(self, name: str) -> str:
        return self.uri(name)


class S3Store(ArtifactStore):
    def __init__(self, uri: str) -> None:
        from codeclab.experiments.aws_clients import client as aws_client  # only S3 outputs need boto3

        self.bucket, prefix = split_s3_uri(uri)
        self.prefix = prefix.strip("/")
        self._s3 = aws_client("s3")
        self.staging = Path(tempfile.mkdtemp(prefix="codeclab-out-"))

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def publish(self, name: str) -> str:
        self._s3.upload_file(str(self.staging / name), self.bucket, self._key(name))
        return self.uri(name)

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def open_store(destination: str) -> ArtifactStore:
    if destination.startswith("s3://"):
        return S3Store(destination)
    return LocalStore(Path(destination))

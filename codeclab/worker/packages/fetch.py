"""Files the worker reads from the artifact bucket's codecs/ prefix, or from a local path in local mode.

`download` brings one s3:// object into a private file, refused past a size cap. `fetch_checked` gives a
copy of a single file (a learned codec's weights) named by its sha256 in the cache, after checking the copy
has that hash: the file loaded is the file checked, even if the original changes meanwhile.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import IO, Any

from codeclab.experiments.s3_uri import split_s3_uri
from codeclab.worker.hashing import CHUNK, sha256_file
from codeclab.worker.packages.manifest import PackageError

MAX_FILE_BYTES = 2 * 1024**3  # a large checkpoint, as for a whole package


def download(uri: str, target: Path, max_bytes: int, field: str, s3: Any = None) -> Path:
    """The s3:// object `uri` into the new file `target`; a missing, denied or oversized object names `field`."""
    from botocore.exceptions import BotoCoreError, ClientError  # only S3 reads need botocore: not every job's start-up

    if s3 is None:
        from codeclab.experiments.aws_clients import client as aws_client

        s3 = aws_client("s3")
    bucket, key = split_s3_uri(uri)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        size = int(response["ContentLength"])
        if size > max_bytes:
            raise PackageError(f"{field}: {uri} is {size} bytes; at most {max_bytes}")
        with target.open("xb") as out:
            copy_exactly(response["Body"], out, size)
    except PackageError:
        target.unlink(missing_ok=True)
        raise
    except (BotoCoreError, ClientError, OSError) as exc:  # a missing object or a denied read: the spec's to fix
        target.unlink(missing_ok=True)
        raise PackageError(f"{field}: cannot read {uri}: {exc}") from None
    return target


def copy_exactly(source: IO[bytes], out: IO[bytes], size: int) -> None:
    left = size
    while left > 0:
        block = source.read(min(CHUNK, left))
        if not block:
            raise PackageError("the data is shorter than its header says")
        out.write(block)
        left -= len(block)


def fetch_checked(uri: str, sha256: str, field: str, cache: Path, s3: Any = None) -> Path:
    """A copy of the file at `uri` in `cache`, named by `sha256` and holding exactly that content."""
    folder = cache / "files"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sha256}{Path(uri).suffix}"
    if target.is_file() and sha256_file(target) == sha256:
        return target
    staging = folder / f".fetch-{secrets.token_hex(8)}"
    try:
        if uri.startswith("s3://"):
            download(uri, staging, MAX_FILE_BYTES, field, s3)
        else:
            _copy_local(Path(uri), staging, field)
        actual = sha256_file(staging)
        if actual != sha256:
            raise PackageError(
                f"{field.removesuffix('.uri')}.sha256: {uri} has sha256 {actual}, and the spec says {sha256}; "
                "the file changed since the spec was written, or the spec names the wrong file"
            )
        staging.replace(target)  # atomic: two workers fetching the same file each see it whole
    finally:
        staging.unlink(missing_ok=True)
    return target


def _copy_local(source: Path, target: Path, field: str) -> None:
    """A regular file only (a FIFO or /dev/zero behind a link would never end), copied up to the cap."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO without a writer must not block
        with os.fdopen(fd, "rb") as data, target.open("xb") as out:
            info = os.fstat(data.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PackageError(f"{field}: {source} is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise PackageError(f"{field}: {source} is {info.st_size} bytes; at most {MAX_FILE_BYTES}")
            copy_exactly(data, out, info.st_size)
    except OSError as exc:
        raise PackageError(f"{field}: cannot read {source}: {exc.strerror or exc}") from None

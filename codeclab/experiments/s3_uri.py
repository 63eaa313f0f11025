"""`s3://bucket/key` addresses, split in one place."""

from __future__ import annotations


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/with/slashes") for "s3://bucket/key/with/slashes"."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key

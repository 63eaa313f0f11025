"""Experiment ids: `exp_` + a ULID (time-ordered), or derived from an Idempotency-Key."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EXPERIMENT_ID_PATTERN = re.compile(r"^exp_[0-9A-HJKMNP-TV-Z]{26}$")


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


def new_experiment_id(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    return "exp_" + _base32(millis, 10) + _base32(secrets.randbits(80), 16)


def experiment_id_for(idempotency_key: str) -> str:
    """The same key always names the same experiment, so a retried POST starts nothing new."""
    digest = int.from_bytes(hashlib.sha256(idempotency_key.encode("utf-8")).digest()[:17], "big")
    return "exp_" + _base32(digest >> 6, 26)  # 130 bits -> 26 base32 digits


def is_experiment_id(value: object) -> bool:
    return isinstance(value, str) and bool(EXPERIMENT_ID_PATTERN.match(value))

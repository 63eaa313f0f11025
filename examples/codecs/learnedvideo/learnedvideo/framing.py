"""Length-prefixed frame payloads, shared by the containers of the per-frame codecs."""

from __future__ import annotations

import struct
from typing import BinaryIO

_LENGTH = struct.Struct("<I")


def write_payload(fh: BinaryIO, payload: bytes) -> None:
    fh.write(_LENGTH.pack(len(payload)))
    fh.write(payload)


def read_payloads(data: bytes, offset: int, count: int) -> list[memoryview]:
    """`count` payloads starting at `offset`; raises ValueError when the data ends early."""
    view, payloads = memoryview(data), []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise ValueError("truncated payload")
        payloads.append(view[offset : offset + length])
        offset += length
    return payloads

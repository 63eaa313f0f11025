"""What the worker and a codec child say to each other, over pipes only.

The worker writes one line of JSON (the `ChildRequest`) and then the input bytes to the
child's stdin. The child answers on a pipe of its own (`result_fd`) in frames: a one-byte kind and an
8-byte length, then that many bytes. It sends READY once every layer is in place and before
any user code has run, waits for one byte on stdin ("go"), then sends OUTPUT or ERROR. In
between, a codec package's `ctx.progress` sends PROGRESS frames: 8 bytes, frames done, each
more than the last and at most the frames of the clip.

Nothing the child writes is trusted: the worker reads each frame's header first and refuses a
kind or a length it does not expect before reading the body, so a child cannot make the
worker read a link, block on a FIFO or inflate an archive. No file of the child's is read.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the sandboxed child imports this module: it must not pull in jsonschema at run time
    from codeclab.experiments.schema import CodecParams

GO = b"G"
FRAME_HEADER = struct.Struct(">cQ")
MAX_REQUEST_LINE = 64 << 20  # the request is JSON with the codec source (at most 1 MB) in it
MAX_JSON_FRAME = 64 << 10  # READY and ERROR bodies
PROGRESS_BODY = struct.Struct(">Q")  # frames done


class Kind(Enum):
    READY = b"R"
    OUTPUT = b"O"
    ERROR = b"E"
    PROGRESS = b"P"


class ErrorKind(Enum):
    USER = "user"  # the codec raised: its own traceback
    POLICY = "policy"  # the codec ran into a limit or a wall (PermissionError, MemoryError, ImportError)
    SETUP = "setup"  # the sandbox could not be built for a reason that is ours, not the host's
    UNAVAILABLE = "unavailable"  # a required layer cannot be applied on this host


# Decoded frames travel as raw planes: this first byte says which layout follows.
YUV420_PLANES, RGB_FRAMES = b"y", b"r"


@dataclass(frozen=True)
class PublicHeader:
    """All a decoder may know besides the bitstream."""

    width: int
    height: int
    frames: int
    fps: str


@dataclass(frozen=True)
class PackageRequest:
    """A codec package to run instead of inline code: its folder, entry module, weights files and device."""

    root: str  # the verified, unpacked package folder: readable and on sys.path in the child
    entry: str  # dotted module that defines encode(frames, params, ctx) and decode(bitstream, header, ctx)
    weights: dict[str, str]  # the weights files the manifest lists (relative to root), all ctx.weights may open,
    # with their sha256, checked before the child starts
    device: str  # "cpu" or "cuda": what ctx.device says


@dataclass(frozen=True)
class ChildRequest:
    role: str  # "encode" or "decode"
    code: str
    params: CodecParams  # the encoder's params; empty for the decoder
    header: PublicHeader
    payload_bytes: int
    allowed_imports: list[str]
    preload: list[str]
    required: list[str]  # Layer values
    optional: list[str]
    seccomp: list[str]  # Family values
    uid: int
    file_uid: int
    cpu_seconds: int
    file_bytes: int
    address_space_bytes: int | None
    scratch: str
    scratch_bytes: int
    max_threads: int
    readable: list[tuple[str, str]]  # (path, landlock.Access value)
    hidden: list[str]  # copies of the source that must not be readable
    result_fd: int  # where the child writes its frames (the worker's pipe, kept open across exec)
    package: PackageRequest | None = None  # a codec package; `code` is then empty

    def to_line(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> ChildRequest:
        fields = json.loads(line)
        fields["header"] = PublicHeader(**fields["header"])
        fields["readable"] = [tuple(pair) for pair in fields["readable"]]
        if fields.get("package") is not None:
            fields["package"] = PackageRequest(**fields["package"])
        return cls(**fields)


def send(fd: int, kind: Kind, body: bytes | memoryview) -> None:
    """Write one frame, however many writes the pipe needs."""
    for chunk in (FRAME_HEADER.pack(kind.value, len(body)), body):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def send_json(fd: int, kind: Kind, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    if len(body) > MAX_JSON_FRAME:
        raise ValueError(f"a {kind.name} message of {len(body)} bytes is over {MAX_JSON_FRAME}")
    send(fd, kind, body)

"""Shared pieces of the sandbox tests: a tiny clip, codec sources, and runs of one child or of a pair."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from codeclab.worker.errors import WorkerError
from codeclab.worker.sandbox.layers import SandboxLimits, SandboxPolicy
from codeclab.worker.sandbox.protocol import YUV420_PLANES, PublicHeader
from codeclab.worker.sandbox.runner import ChildJob, ChildResult, run_child
from codeclab.worker.sandbox.static_check import allowed_imports
from codeclab.worker.video import Video, write_y4m

SECRET = "s3cr3t-canary-value"
N, H, W = 2, 16, 16
HEADER = PublicHeader(W, H, N, "25")
TIGHT = SandboxLimits(
    wall_seconds=8, cpu_seconds=3, file_bytes=8 << 20, address_space_bytes=4 << 30, scratch_bytes=32 << 20,
    max_threads=64,
)  # fmt: skip
FULL = SandboxPolicy()


def planes() -> dict[str, np.ndarray]:
    """A fixed random clip; its first luma byte has its low three bits set to 101."""
    rng = np.random.default_rng(0)
    shapes = {"y": (N, H, W), "u": (N, H // 2, W // 2), "v": (N, H // 2, W // 2)}
    frames = {k: rng.integers(0, 255, s, dtype=np.uint8) for k, s in shapes.items()}
    frames["y"][0, 0, 0] = 0xA5
    return frames


def raw_frames() -> bytes:
    return b"".join(p.tobytes() for p in planes().values())


def frames_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **planes())
    return buffer.getvalue()


def write_reference(path: Path) -> Path:
    frames = planes()
    write_y4m(Video(frames["y"], frames["u"], frames["v"], Fraction(25)), path)
    return path


def codec(encode_body: str, decode_body: str = "return None", prelude: str = "") -> str:
    indent = "\n    "
    return (f"{prelude}\ndef encode(frames, params):{indent}{encode_body.replace(chr(10), indent)}\n"
            f"def decode(bitstream, header):{indent}{decode_body.replace(chr(10), indent)}\n")  # fmt: skip


def job(role: str, code: str, imports: Sequence[str] = (), payload: bytes | None = None, **extra: object) -> ChildJob:
    """A child's job as the custom codec makes it: the default allow-list plus `imports`, those preloaded."""
    wanted = sorted({"numpy", *imports})
    data = raw_frames() if payload is None else payload
    cap = 2 * len(raw_frames()) + (1 << 20) if role == "encode" else 1 + 3 * N * H * W
    return ChildJob(role=role, code=code, header=HEADER, payload=data, max_output_bytes=cap,
                    allowed_imports=sorted(allowed_imports(imports)), preload=wanted, **extra)  # type: ignore[arg-type]  # fmt: skip


def run(role: str, code: str, imports: Sequence[str] = (), policy: SandboxPolicy = FULL,
        limits: SandboxLimits = TIGHT, payload: bytes | None = None, **extra: object) -> ChildResult:  # fmt: skip
    return run_child(job(role, code, imports, payload, **extra), limits, policy)


@dataclass(frozen=True)
class Transmission:
    """An encoder, then a decoder, as the worker runs them; what reached the decoder's output."""

    bitstream: bytes | None
    decoded: bytes | None
    error: WorkerError | None

    def leaked(self, count: int | None = None) -> bool:
        """Whether the decoder's output starts with the first `count` bytes of the reference (all by default)."""
        reference = raw_frames()
        count = len(reference) if count is None else count
        return self.decoded is not None and self.decoded[1 : 1 + count] == reference[:count]


def transmit(code: str, imports: Sequence[str] = (), policy: SandboxPolicy = FULL, **extra: object) -> Transmission:
    try:
        bitstream = run("encode", code, imports, policy, **extra).output
    except WorkerError as exc:
        return Transmission(None, None, exc)
    try:
        decoded = run("decode", code, imports, policy, payload=bitstream, **extra).output
    except WorkerError as exc:
        return Transmission(bitstream, None, exc)
    assert decoded[:1] == YUV420_PLANES
    return Transmission(bitstream, decoded, None)

"""The learned codec's container, CLN2 (little-endian).

A 28-byte header: magic b"CLN2", quality u8, intra period u16 (1 = every frame an I-frame), the
encoder's torch CPU threads u8, the first 4 bytes of the weights file's sha256, width u16, height
u16, frame count u32, fps numerator u32 and denominator u32; then per frame a u32 length and the
frame's range-coded payload. Frame i is an I-frame when i is a multiple of the intra period, else
a P-frame predicted from frame i-1. The decoder runs with the encoder's threads: the order of float
sums, so a reconstruction's last bits, can depend on them, and each P-frame predicts from the last.
The built-in codec and the exported package both write it with this module, so their streams are
the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from .framing import read_payloads

MAGIC = b"CLN2"
MAX_THREADS = 64  # the params' maximum: a stream cannot make its decoder start more
HEADER = struct.Struct("<4sBHB4sHHIII")


@dataclass(frozen=True)
class StreamInfo:
    quality: int
    intra_period: int
    threads: int
    fingerprint: bytes  # the first 4 bytes of the weights file's sha256
    width: int
    height: int
    frames: int
    fps: Fraction

    def pack(self) -> bytes:
        return HEADER.pack(
            MAGIC, self.quality, self.intra_period, self.threads, self.fingerprint,
            self.width, self.height, self.frames, self.fps.numerator, self.fps.denominator,
        )  # fmt: skip

    def check_weights(self, fingerprint: bytes, qualities: int) -> None:
        """ValueError unless these weights made the stream: a decoder with others would decode noise."""
        if self.fingerprint != fingerprint:
            raise ValueError(
                f"the stream was made by weights {self.fingerprint.hex()}, but this decoder has weights "
                f"{fingerprint.hex()}"
            )
        if not 1 <= self.quality <= qualities:
            raise ValueError(f"the stream says quality {self.quality}, and its weights have 1 to {qualities}")


def read_stream(data: bytes) -> tuple[StreamInfo, list[memoryview]]:
    """The header and the per-frame payloads; ValueError if the data is not a whole CLN2 stream."""
    damaged = ValueError("the stream is truncated or damaged")
    try:
        magic, quality, period, threads, fingerprint, width, height, frames, num, den = HEADER.unpack_from(data)
    except struct.error:
        raise damaged from None
    if magic != MAGIC:
        raise ValueError("not a codeclab learned-codec stream (no CLN2 magic)")
    if period < 1 or not 1 <= threads <= MAX_THREADS or width < 2 or height < 2:
        raise damaged
    try:
        payloads, fps = read_payloads(data, HEADER.size, frames), Fraction(num, den)
    except (struct.error, ValueError, ZeroDivisionError):
        raise damaged from None
    return StreamInfo(quality, period, threads, fingerprint, width, height, frames, fps), payloads

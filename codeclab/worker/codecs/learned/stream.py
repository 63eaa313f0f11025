"""The learned codec's container, CLN1 (little-endian).

A 25-byte header: magic b"CLN1", quality u8, the first 4 bytes of the weights file's sha256, width
u16, height u16, frame count u32, fps numerator u32 and denominator u32; then per frame a u32
length and the frame's range-coded payload. The built-in codec and the exported package both
write it with this module, so their streams are the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from codeclab.worker.codecs.framing import read_payloads

MAGIC = b"CLN1"
HEADER = struct.Struct("<4sB4sHHIII")


@dataclass(frozen=True)
class StreamInfo:
    quality: int
    fingerprint: bytes  # the first 4 bytes of the weights file's sha256
    width: int
    height: int
    frames: int
    fps: Fraction

    def pack(self) -> bytes:
        return HEADER.pack(
            MAGIC, self.quality, self.fingerprint, self.width, self.height, self.frames,
            self.fps.numerator, self.fps.denominator,
        )  # fmt: skip

    def check_weights(self, quality: int, fingerprint: bytes) -> None:
        """ValueError unless the stream was made by these weights: a decoder with others would decode noise."""
        if (self.quality, self.fingerprint) != (quality, fingerprint):
            raise ValueError(
                f"the stream was made by quality {self.quality} weights {self.fingerprint.hex()}, but this "
                f"decoder has quality {quality} weights {fingerprint.hex()}"
            )


def read_stream(data: bytes) -> tuple[StreamInfo, list[memoryview]]:
    """The header and the per-frame payloads; ValueError if the data is not a whole CLN1 stream."""
    damaged = ValueError("the stream is truncated or damaged")
    try:
        magic, quality, fingerprint, width, height, frames, num, den = HEADER.unpack_from(data)
    except struct.error:
        raise damaged from None
    if magic != MAGIC:
        raise ValueError("not a codeclab learned-codec stream (no CLN1 magic)")
    try:
        payloads, fps = read_payloads(data, HEADER.size, frames), Fraction(num, den)
    except (struct.error, ValueError, ZeroDivisionError):
        raise damaged from None
    return StreamInfo(quality, fingerprint, width, height, frames, fps), payloads

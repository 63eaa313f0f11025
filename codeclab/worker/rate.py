"""Rate figures, all from the bitstream's bytes on disk."""

from __future__ import annotations

from codeclab.worker.video import FrameSource

_RATE = (
    "bitstream bytes on disk; bpp = 8*bytes/(width*height*frames); kbps = 8*bytes/1000 per "
    "(frames/fps) seconds; compression_ratio = raw yuv420p bytes / bitstream bytes"
)


def rate_conditions(bit_depth: int) -> str:
    """The rate's definition; 8-bit keeps the words it always had, so older results stay comparable."""
    if bit_depth == 8:
        return _RATE
    return f"{_RATE}, the raw bytes counted at {bit_depth} bits a sample (width*height*1.5*{bit_depth}/8 a frame)"


def rate_metrics(bitstream_bytes: int, video: FrameSource) -> dict[str, float]:
    pixels = video.width * video.height * video.frames
    seconds = video.frames / video.fps
    return {
        "bpp": 8 * bitstream_bytes / pixels,
        "kbps": float(8 * bitstream_bytes / 1000 / seconds),
        "compression_ratio": video.raw_bits / 8 / bitstream_bytes,
    }

"""Rate figures, all from the bitstream's bytes on disk."""

from __future__ import annotations

from codeclab.worker.video import Video

RATE_CONDITIONS = (
    "bitstream bytes on disk; bpp = 8*bytes/(width*height*frames); kbps = 8*bytes/1000 per "
    "(frames/fps) seconds; compression_ratio = raw yuv420p bytes / bitstream bytes"
)


def rate_metrics(bitstream_bytes: int, video: Video) -> dict[str, float]:
    pixels = video.width * video.height * video.frames
    seconds = video.frames / video.fps
    return {
        "bpp": 8 * bitstream_bytes / pixels,
        "kbps": float(8 * bitstream_bytes / 1000 / seconds),
        "compression_ratio": video.raw_bytes / bitstream_bytes,
    }

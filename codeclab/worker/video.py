"""yuv420p 8-bit video in memory, and the y4m files that keep it on disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from codeclab.worker.errors import InvalidSource

Y4M_MAGIC = b"YUV4MPEG2"

# Called with the number of frames a stage has finished: drives progress and the stall watchdog.
FrameCallback = Callable[[int], None]


@dataclass(frozen=True)
class Video:
    """Planar yuv420p frames: y is (N, H, W), u and v are (N, H/2, W/2), all uint8."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    fps: Fraction

    def __post_init__(self) -> None:
        n, h, w = self.y.shape
        expected = (n, h // 2, w // 2)
        if h % 2 or w % 2 or self.u.shape != expected or self.v.shape != expected:
            raise ValueError(f"not yuv420p: y{self.y.shape} u{self.u.shape} v{self.v.shape}")
        for plane in (self.y, self.u, self.v):
            if plane.dtype != np.uint8:
                raise ValueError(f"planes must be uint8, got {plane.dtype}")

    @property
    def frames(self) -> int:
        return int(self.y.shape[0])

    @property
    def height(self) -> int:
        return int(self.y.shape[1])

    @property
    def width(self) -> int:
        return int(self.y.shape[2])

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3 // 2

    @property
    def raw_bytes(self) -> int:
        """Size of the clip as raw yuv420p: the numerator of the compression ratio."""
        return self.frame_bytes * self.frames

    @classmethod
    def from_raw(cls, data: bytes, width: int, height: int, fps: Fraction) -> Video:
        """Split concatenated raw yuv420p frames into planes."""
        frame = width * height * 3 // 2
        if len(data) % frame:
            raise ValueError(f"{len(data)} bytes is not a whole number of {width}x{height} frames")
        flat = np.frombuffer(data, dtype=np.uint8).reshape(-1, frame)
        luma, chroma = width * height, width * height // 4
        shape_c = (-1, height // 2, width // 2)
        return cls(
            y=flat[:, :luma].reshape(-1, height, width),
            u=flat[:, luma : luma + chroma].reshape(shape_c),
            v=flat[:, luma + chroma :].reshape(shape_c),
            fps=fps,
        )

    def frame_planes(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.y[index], self.u[index], self.v[index]

    def iter_raw_frames(self) -> Iterator[bytes]:
        for i in range(self.frames):
            yield b"".join(p.tobytes() for p in self.frame_planes(i))


def write_y4m(video: Video, path: Path) -> None:
    fps = video.fps
    header = f"YUV4MPEG2 W{video.width} H{video.height} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg\n"
    with path.open("wb") as fh:
        fh.write(header.encode("ascii"))
        for raw in video.iter_raw_frames():
            fh.write(b"FRAME\n")
            fh.write(raw)


@dataclass(frozen=True)
class Y4MHeader:
    width: int
    height: int
    fps: Fraction
    colorspace: str
    header_bytes: int


# y4m colour tags that are 8-bit 4:2:0 (they differ only in chroma siting).
_Y4M_420_8BIT = {"420", "420jpeg", "420paldv", "420mpeg2"}


MAX_SIDE = 16384  # twice 8K's width: anything larger is a damaged header, not a video


def read_y4m_header(path: Path) -> Y4MHeader:
    """Parse the stream header; refuse anything but 8-bit 4:2:0 with the fix spelled out."""
    with path.open("rb") as fh:
        line = fh.readline(4096)
    if not line.startswith(Y4M_MAGIC) or not line.endswith(b"\n"):
        raise InvalidSource(f"{path}: not a y4m file (no YUV4MPEG2 header)")
    fields = {tok[:1]: tok[1:] for tok in line.decode("ascii", "replace").split()[1:]}
    try:
        width, height = int(fields["W"]), int(fields["H"])
        num, den = (int(x) for x in fields.get("F", "25:1").split(":"))
        fps = Fraction(num, den)
    except (KeyError, ValueError, ZeroDivisionError):
        raise InvalidSource(f"{path}: malformed y4m header {line[:80]!r}") from None
    colorspace = fields.get("C", "420jpeg")
    if colorspace not in _Y4M_420_8BIT:
        raise InvalidSource(
            f"{path}: y4m colour format C{colorspace} is refused: codeclab measures 8-bit yuv420p "
            "only, and converting silently would change the reference. Convert it first: "
            f"ffmpeg -i {path.name} -pix_fmt yuv420p converted.y4m"
        )
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or fps <= 0:
        raise InvalidSource(
            f"{path}: the y4m header claims {width}x{height} at {fps} fps; sides must be 1 to {MAX_SIDE} pixels "
            "and the rate positive"
        )
    if width % 2 or height % 2:
        raise InvalidSource(f"{path}: {width}x{height} is odd; yuv420p needs even sizes")
    frame_bytes = width * height * 3 // 2
    if path.stat().st_size < len(line) + len(b"FRAME\n") + frame_bytes:
        raise InvalidSource(
            f"{path}: the y4m header claims {width}x{height} ({frame_bytes} bytes a frame), but the file holds "
            f"{path.stat().st_size} bytes, not one whole frame; the header or the file is damaged"
        )
    return Y4MHeader(width, height, fps, colorspace, len(line))


def read_y4m(path: Path, start: int = 0, count: int | None = None) -> Video:
    """Read frames [start, start+count) of an 8-bit 4:2:0 y4m file (all when count is None)."""
    header = read_y4m_header(path)
    frame_size = header.width * header.height * 3 // 2
    chunks: list[bytes] = []
    index = 0
    with path.open("rb") as fh:
        fh.seek(header.header_bytes)
        while (count is None or len(chunks) < count) and (tag := fh.readline(1024)):
            if not tag.startswith(b"FRAME"):
                raise InvalidSource(f"{path}: corrupt y4m frame marker {tag[:16]!r}")
            if index < start:
                fh.seek(frame_size, 1)
            else:
                data = fh.read(frame_size)
                if len(data) != frame_size:
                    raise InvalidSource(f"{path}: truncated y4m frame {index}")
                chunks.append(data)
            index += 1
    return Video.from_raw(b"".join(chunks), header.width, header.height, header.fps)

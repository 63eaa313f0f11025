"""yuv420p video in memory, 8-bit or 10-bit, and the y4m files that keep it on disk."""

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

# The pixel formats the worker measures, by bit depth; 10-bit samples are little-endian 16-bit words.
BIT_DEPTHS = {"yuv420p": 8, "yuv420p10le": 10}
_DTYPES: dict[str, np.dtype[np.unsignedinteger]] = {"yuv420p": np.dtype(np.uint8), "yuv420p10le": np.dtype("<u2")}


def sample_bytes(pix_fmt: str) -> int:
    return _DTYPES[pix_fmt].itemsize


def frame_size(width: int, height: int, pix_fmt: str) -> int:
    """Bytes of one raw frame of `pix_fmt` (planar 4:2:0, as ffmpeg's rawvideo and y4m store it)."""
    return width * height * 3 // 2 * sample_bytes(pix_fmt)


@dataclass(frozen=True)
class Video:
    """Planar 4:2:0 frames: y is (N, H, W), u and v are (N, H/2, W/2); uint8 at 8-bit, uint16 at 10-bit."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    fps: Fraction

    def __post_init__(self) -> None:
        n, h, w = self.y.shape
        expected = (n, h // 2, w // 2)
        if h % 2 or w % 2 or self.u.shape != expected or self.v.shape != expected:
            raise ValueError(f"not yuv420p: y{self.y.shape} u{self.u.shape} v{self.v.shape}")
        if self.y.dtype not in (np.uint8, np.uint16) or not self.y.dtype == self.u.dtype == self.v.dtype:
            raise ValueError(
                f"planes must all be uint8 or all uint16, got {self.y.dtype} {self.u.dtype} {self.v.dtype}"
            )

    @property
    def pix_fmt(self) -> str:
        return "yuv420p" if self.y.dtype == np.uint8 else "yuv420p10le"

    @property
    def bit_depth(self) -> int:
        return BIT_DEPTHS[self.pix_fmt]

    @property
    def peak(self) -> int:
        """The largest sample value: 255 at 8-bit, 1023 at 10-bit."""
        return (1 << self.bit_depth) - 1

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
        """Bytes of one frame as stored raw (2 bytes a sample at 10-bit)."""
        return frame_size(self.width, self.height, self.pix_fmt)

    @property
    def raw_bytes(self) -> int:
        """Bytes of the clip as stored raw."""
        return self.frame_bytes * self.frames

    @property
    def raw_bits(self) -> int:
        """Bits of the clip at its bit depth (10 a sample at 10-bit, not 16): the numerator of the compression ratio."""
        return self.width * self.height * 3 // 2 * self.bit_depth * self.frames

    @classmethod
    def from_raw(cls, data: bytes, width: int, height: int, fps: Fraction, pix_fmt: str = "yuv420p") -> Video:
        """Split concatenated raw 4:2:0 frames of `pix_fmt` into planes."""
        frame = frame_size(width, height, pix_fmt)
        if len(data) % frame:
            raise ValueError(f"{len(data)} bytes is not a whole number of {width}x{height} {pix_fmt} frames")
        flat = np.frombuffer(data, dtype=_DTYPES[pix_fmt]).reshape(-1, frame // sample_bytes(pix_fmt))
        luma, chroma = width * height, width * height // 4
        shape_c = (-1, height // 2, width // 2)
        # native byte order on any host; no copy on a little-endian one
        planes = [flat[:, :luma], flat[:, luma : luma + chroma], flat[:, luma + chroma :]]
        if pix_fmt != "yuv420p":
            planes = [p.astype(np.uint16, copy=False) for p in planes]
        return cls(
            y=planes[0].reshape(-1, height, width),
            u=planes[1].reshape(shape_c),
            v=planes[2].reshape(shape_c),
            fps=fps,
        )

    def frame_planes(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.y[index], self.u[index], self.v[index]

    def iter_raw_frames(self) -> Iterator[bytes]:
        """Each frame as raw bytes of its pix_fmt (10-bit samples little-endian)."""
        dtype = _DTYPES[self.pix_fmt]
        for i in range(self.frames):
            yield b"".join(p.astype(dtype, copy=False).tobytes() for p in self.frame_planes(i))


# y4m's colour tag for each pixel format written; 8-bit keeps the tag it always had.
_Y4M_TAGS = {"yuv420p": "C420jpeg", "yuv420p10le": "C420p10 XYSCSS=420P10"}


def write_y4m(video: Video, path: Path) -> None:
    fps = video.fps
    tag = _Y4M_TAGS[video.pix_fmt]
    header = f"YUV4MPEG2 W{video.width} H{video.height} F{fps.numerator}:{fps.denominator} Ip A1:1 {tag}\n"
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
    pix_fmt: str
    header_bytes: int


# y4m colour tags of 4:2:0 by pixel format (the 8-bit ones differ only in chroma siting).
_Y4M_420 = {
    "420": "yuv420p",
    "420jpeg": "yuv420p",
    "420paldv": "yuv420p",
    "420mpeg2": "yuv420p",
    "420p10": "yuv420p10le",
}


MAX_SIDE = 16384  # twice 8K's width: anything larger is a damaged header, not a video


def read_y4m_header(path: Path) -> Y4MHeader:
    """Parse the stream header; refuse anything but 8- or 10-bit 4:2:0 with the fix spelled out."""
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
    if colorspace not in _Y4M_420:
        raise InvalidSource(
            f"{path}: y4m colour format C{colorspace} is refused: codeclab measures 4:2:0 at 8 or 10 bits "
            "only, and converting silently would change the reference. Convert it first: "
            f"ffmpeg -i {path.name} -pix_fmt yuv420p10le -strict -1 converted.y4m (or -pix_fmt yuv420p)"
        )
    pix_fmt = _Y4M_420[colorspace]
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or fps <= 0:
        raise InvalidSource(
            f"{path}: the y4m header claims {width}x{height} at {fps} fps; sides must be 1 to {MAX_SIDE} pixels "
            "and the rate positive"
        )
    if width % 2 or height % 2:
        raise InvalidSource(f"{path}: {width}x{height} is odd; yuv420p needs even sizes")
    frame_bytes = frame_size(width, height, pix_fmt)
    if path.stat().st_size < len(line) + len(b"FRAME\n") + frame_bytes:
        raise InvalidSource(
            f"{path}: the y4m header claims {width}x{height} {pix_fmt} ({frame_bytes} bytes a frame), but the file "
            f"holds {path.stat().st_size} bytes, not one whole frame; the header or the file is damaged"
        )
    return Y4MHeader(width, height, fps, colorspace, pix_fmt, len(line))


def read_y4m(path: Path, start: int = 0, count: int | None = None) -> Video:
    """Read frames [start, start+count) of an 8- or 10-bit 4:2:0 y4m file (all when count is None)."""
    header = read_y4m_header(path)
    frame_bytes = frame_size(header.width, header.height, header.pix_fmt)
    chunks: list[bytes] = []
    index = 0
    with path.open("rb") as fh:
        fh.seek(header.header_bytes)
        while (count is None or len(chunks) < count) and (tag := fh.readline(1024)):
            if not tag.startswith(b"FRAME"):
                raise InvalidSource(f"{path}: corrupt y4m frame marker {tag[:16]!r}")
            if index < start:
                fh.seek(frame_bytes, 1)
            else:
                data = fh.read(frame_bytes)
                if len(data) != frame_bytes:
                    raise InvalidSource(f"{path}: truncated y4m frame {index}")
                chunks.append(data)
            index += 1
    return Video.from_raw(b"".join(chunks), header.width, header.height, header.fps, header.pix_fmt)

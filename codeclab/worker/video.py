"""yuv420p frames, 8-bit or 10-bit: in memory (`Video`), or in a y4m or raw file read one frame at a time
(`FrameFile`); both are a `FrameSource`. `Y4MWriter` writes y4m frame by frame."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np

from codeclab.worker.errors import InvalidSource

Y4M_MAGIC = b"YUV4MPEG2"
Y4M_FRAME = b"FRAME\n"

# Called with the number of frames a stage has finished: drives progress and the stall watchdog.
FrameCallback = Callable[[int], None]
# One frame's y, u and v planes: (H, W), (H/2, W/2), (H/2, W/2); uint8 at 8-bit, uint16 at 10-bit.
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]

# The pixel formats the worker measures, by bit depth; 10-bit samples are little-endian 16-bit words.
BIT_DEPTHS = {"yuv420p": 8, "yuv420p10le": 10}
_DTYPES: dict[str, np.dtype[np.unsignedinteger]] = {"yuv420p": np.dtype(np.uint8), "yuv420p10le": np.dtype("<u2")}


def sample_bytes(pix_fmt: str) -> int:
    return _DTYPES[pix_fmt].itemsize


def frame_size(width: int, height: int, pix_fmt: str) -> int:
    """Bytes of one raw frame of `pix_fmt` (planar 4:2:0, as ffmpeg's rawvideo and y4m store it)."""
    return width * height * 3 // 2 * sample_bytes(pix_fmt)


class FrameSource(Protocol):
    """A clip whose frames are read by index: what the metrics, the codecs' encoders and the writers take."""

    @property
    def frames(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def pix_fmt(self) -> str: ...
    @property
    def fps(self) -> Fraction: ...
    @property
    def bit_depth(self) -> int: ...
    @property
    def peak(self) -> int: ...
    @property
    def raw_bits(self) -> int: ...

    def frame_planes(self, index: int) -> Planes: ...


class ClipGeometry:
    """What follows from a clip's size, length and pixel format; a subclass provides those four."""

    width: int
    height: int
    frames: int
    pix_fmt: str

    @property
    def bit_depth(self) -> int:
        return BIT_DEPTHS[self.pix_fmt]

    @property
    def peak(self) -> int:
        """The largest sample value: 255 at 8-bit, 1023 at 10-bit."""
        return (1 << self.bit_depth) - 1

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


def _split(flat: np.ndarray, width: int, height: int, pix_fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, samples of a frame) -> y (N, H, W), u and v (N, H/2, W/2), in native byte order."""
    luma, chroma = width * height, width * height // 4
    shape_c = (-1, height // 2, width // 2)
    # native byte order on any host; no copy on a little-endian one
    planes = [flat[:, :luma], flat[:, luma : luma + chroma], flat[:, luma + chroma :]]
    if pix_fmt != "yuv420p":
        planes = [p.astype(np.uint16, copy=False) for p in planes]
    return planes[0].reshape(-1, height, width), planes[1].reshape(shape_c), planes[2].reshape(shape_c)


def raw_frame(planes: Planes, pix_fmt: str) -> bytes:
    """One frame as raw bytes of its pix_fmt (10-bit samples little-endian)."""
    dtype = _DTYPES[pix_fmt]
    return b"".join(p.astype(dtype, copy=False).tobytes() for p in planes)


@dataclass(frozen=True)
class Video(ClipGeometry):
    """Planar 4:2:0 frames in memory: y is (N, H, W), u and v are (N, H/2, W/2); uint8 at 8-bit, uint16 at 10-bit."""

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
    def pix_fmt(self) -> str:  # type: ignore[override]  # ClipGeometry's attributes, read from the planes here
        return "yuv420p" if self.y.dtype == np.uint8 else "yuv420p10le"

    @property
    def frames(self) -> int:  # type: ignore[override]
        return int(self.y.shape[0])

    @property
    def height(self) -> int:  # type: ignore[override]
        return int(self.y.shape[1])

    @property
    def width(self) -> int:  # type: ignore[override]
        return int(self.y.shape[2])

    @classmethod
    def of(cls, source: FrameSource) -> Video:
        """Every frame of `source` in memory (the custom codecs' whole-clip interface, tests)."""
        dtype = np.uint8 if source.pix_fmt == "yuv420p" else np.uint16
        chroma = (source.frames, source.height // 2, source.width // 2)
        y = np.empty((source.frames, source.height, source.width), dtype)
        u, v = np.empty(chroma, dtype), np.empty(chroma, dtype)
        for index in range(source.frames):
            y[index], u[index], v[index] = source.frame_planes(index)
        return cls(y, u, v, source.fps)

    def frame_planes(self, index: int) -> Planes:
        return self.y[index], self.u[index], self.v[index]


class FrameFile(ClipGeometry):
    """Frames [start, start+frames) of a y4m or raw .yuv file, each read from disk when asked for.

    Frames are fixed-size in both (a y4m frame is b"FRAME\\n" and the raw frame), so frame i is at a known
    offset: nothing but the frame asked for is ever in memory."""

    def __init__(
        self, path: Path, width: int, height: int, pix_fmt: str, fps: Fraction, offset: int, frames: int, marker: bytes
    ) -> None:
        self.path, self.width, self.height, self.pix_fmt, self.fps = path, width, height, pix_fmt, fps
        self.frames, self._offset, self._marker = frames, offset, marker

    @classmethod
    def y4m(cls, path: Path, start: int = 0, count: int | None = None) -> FrameFile:
        """Frames [start, start+count) of an 8- or 10-bit 4:2:0 y4m file (to its end when count is None)."""
        header = read_y4m_header(path)
        stride = len(Y4M_FRAME) + frame_size(header.width, header.height, header.pix_fmt)
        whole, partial = divmod(path.stat().st_size - header.header_bytes, stride)
        end = whole if count is None else min(start + count, whole)
        if partial and (count is None or start + count > whole):
            raise InvalidSource(f"{path}: truncated y4m frame {whole}")
        offset = header.header_bytes + start * stride
        return cls(
            path, header.width, header.height, header.pix_fmt, header.fps, offset, max(end - start, 0), Y4M_FRAME
        )

    @classmethod
    def raw(
        cls, path: Path, width: int, height: int, pix_fmt: str, fps: Fraction, start: int = 0, count: int | None = None
    ) -> FrameFile:
        """Frames [start, start+count) of a headerless file of `pix_fmt` frames; ValueError unless whole frames."""
        size, frame = path.stat().st_size, frame_size(width, height, pix_fmt)
        if size % frame:
            raise ValueError(f"{size} bytes is not a whole number of {width}x{height} {pix_fmt} frames")
        available = max(size // frame - start, 0)
        frames = available if count is None else min(count, available)
        return cls(path, width, height, pix_fmt, fps, start * frame, frames, b"")

    def frame_planes(self, index: int) -> Planes:
        if not 0 <= index < self.frames:
            raise IndexError(f"frame {index} of a {self.frames}-frame clip")
        stride = len(self._marker) + self.frame_bytes
        with self.path.open("rb") as fh:
            data = os.pread(fh.fileno(), stride, self._offset + index * stride)
        if len(data) != stride:
            raise InvalidSource(f"{self.path}: truncated frame {index}")
        if not data.startswith(self._marker):
            raise InvalidSource(
                f"{self.path}: frame {index} does not start with a plain y4m FRAME marker ({data[:16]!r}); frame "
                "parameters are not supported: rewrite the file with ffmpeg -i <file> -f yuv4mpegpipe <new>.y4m"
            )
        flat = np.frombuffer(data, dtype=_DTYPES[self.pix_fmt], offset=len(self._marker)).reshape(1, -1)
        y, u, v = _split(flat, self.width, self.height, self.pix_fmt)
        return y[0], u[0], v[0]


# y4m's colour tag for each pixel format written; 8-bit keeps the tag it always had.
_Y4M_TAGS = {"yuv420p": "C420jpeg", "yuv420p10le": "C420p10 XYSCSS=420P10"}


class Y4MWriter:
    """Writes a y4m file one frame at a time; the header is written on opening."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, pix_fmt: str) -> None:
        self.pix_fmt, self.frames = pix_fmt, 0
        self._shape = ((height, width), (height // 2, width // 2), (height // 2, width // 2))
        tag = _Y4M_TAGS[pix_fmt]
        self._fh = path.open("wb")
        self._fh.write(f"YUV4MPEG2 W{width} H{height} F{fps.numerator}:{fps.denominator} Ip A1:1 {tag}\n".encode())

    def write(self, planes: Planes) -> None:
        shapes = tuple(p.shape for p in planes)
        if shapes != self._shape:
            raise ValueError(f"a frame of planes {shapes} in a clip of {self._shape}")
        self._fh.write(Y4M_FRAME)
        self._fh.write(raw_frame(planes, self.pix_fmt))
        self.frames += 1

    def __enter__(self) -> Y4MWriter:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._fh.close()


def write_y4m(video: FrameSource, path: Path) -> None:
    with Y4MWriter(path, video.width, video.height, video.fps, video.pix_fmt) as out:
        for index in range(video.frames):
            out.write(video.frame_planes(index))


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
    """Frames [start, start+count) of an 8- or 10-bit 4:2:0 y4m file (all when count is None), in memory."""
    return Video.of(FrameFile.y4m(path, start, count))

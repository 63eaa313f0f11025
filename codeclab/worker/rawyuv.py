"""Raw .yuv clips: their geometry (from the spec, else the file name) and their frames.

A raw file has no header, so its width, height, pixel format and frame rate come from the
spec's `source` fields, else from the file name as JVET, HEVC CTC and UVG name their files:
`<sequence>_<W>x<H>_<fps>[fps][_<bit depth>bit][_420][_<anything>].yuv`, e.g.
`BQMall_832x480_60.yuv`, `NebutaFestival_2560x1600_60_10bit_crop.yuv`,
`MarketPlace_1920x1080_60fps_10bit_420.yuv`, `Beauty_3840x2160_120fps_420_10bit_YUV.yuv`.
A name without a bit-depth tag is 8-bit, the CTC convention for its untagged files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from codeclab.experiments.schema import SourceSpec
from codeclab.worker.errors import InvalidSource
from codeclab.worker.video import FrameFile, frame_size

_SIZE = re.compile(r"^(\d+)x(\d+)$")
_FPS = re.compile(r"^(\d+(?:\.\d+)?)(?:fps|hz)?$", re.IGNORECASE)
_DEPTH = re.compile(r"^(\d+)bits?$", re.IGNORECASE)
_CHROMA = re.compile(r"^(4[24][024])p?$")
_PIX_FMT_OF_DEPTH = {8: "yuv420p", 10: "yuv420p10le"}
FIELDS = ("width", "height", "pix_fmt", "fps")


@dataclass(frozen=True)
class RawGeometry:
    """How to cut a raw file into frames, and where each fact came from (recorded with the result)."""

    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    origin: str


@dataclass(frozen=True)
class NamedGeometry:
    """What a file name says; `depth_tagged` is False when it names no bit depth (then it is 8-bit)."""

    width: int
    height: int
    fps: str | None
    pix_fmt: str
    depth_tagged: bool

    def fields(self) -> dict[str, object]:
        found = {"width": self.width, "height": self.height, "pix_fmt": self.pix_fmt, "fps": self.fps}
        return {field: value for field, value in found.items() if value is not None}


def raw_geometry(source: SourceSpec, file_name: str) -> RawGeometry:
    """The geometry of a raw clip: each spec field given wins; the rest come from the file name."""
    named = geometry_from_name(file_name)
    from_name = named.fields() if named else {}
    given = {field: source[field] for field in FIELDS if field in source}  # type: ignore[literal-required]
    missing = [field for field in FIELDS if field not in given and field not in from_name]
    if missing:
        raise InvalidSource(
            f"$.source: {file_name} is raw video with no header, and neither the spec nor the file name gives its "
            f'{", ".join(missing)}; add them to source (e.g. "width": 832, "height": 480, "pix_fmt": '
            '"yuv420p10le", "fps": 60) or name the file like BQMall_832x480_60_10bit.yuv'
        )
    merged = {**from_name, **given}
    spec_part = ", ".join(field for field in FIELDS if field in given)
    name_part = ", ".join(field for field in FIELDS if field not in given)
    parts = [f"{spec_part} from the spec" if spec_part else "", f"{name_part} from the file name" if name_part else ""]
    origin = "; ".join(part for part in parts if part)
    if named and "pix_fmt" not in given and not named.depth_tagged:
        origin += " (no bit-depth tag: 8-bit)"
    return RawGeometry(
        int(str(merged["width"])),
        int(str(merged["height"])),
        str(merged["pix_fmt"]),
        Fraction(str(merged["fps"])),
        origin,
    )


def geometry_from_name(file_name: str) -> NamedGeometry | None:
    """What a file name says when it has a `_<W>x<H>` token after the sequence's name; None when not."""
    tokens = Path(file_name).stem.split("_")
    sizes = [(i, match) for i, token in enumerate(tokens) if i > 0 and (match := _SIZE.match(token))]
    if not sizes:
        return None
    at, size = sizes[0]
    fps: str | None = None
    pix_fmt: str | None = None
    for token in tokens[at + 1 :]:
        if chroma := _CHROMA.match(token):
            _refuse_chroma(file_name, chroma.group(1))
        elif (depth := _DEPTH.match(token)) and pix_fmt is None:
            pix_fmt = _pix_fmt_of(file_name, int(depth.group(1)))
        elif (rate := _FPS.match(token)) and fps is None:
            fps = rate.group(1)
    return NamedGeometry(int(size.group(1)), int(size.group(2)), fps, pix_fmt or "yuv420p", pix_fmt is not None)


def _refuse_chroma(file_name: str, chroma: str) -> None:
    if chroma != "420":
        raise InvalidSource(
            f"$.source.clip: {file_name} names {chroma[0]}:{chroma[1]}:{chroma[2]} chroma; codeclab measures 4:2:0 "
            "only. Convert it first: ffmpeg -f rawvideo -pix_fmt <its format> -s <W>x<H> -i <file> "
            "-pix_fmt yuv420p10le converted.yuv"
        )


def _pix_fmt_of(file_name: str, depth: int) -> str:
    if depth not in _PIX_FMT_OF_DEPTH:
        raise InvalidSource(
            f"$.source.clip: {file_name} names {depth}-bit samples; codeclab measures 8- and 10-bit 4:2:0 only"
        )
    return _PIX_FMT_OF_DEPTH[depth]


def raw_frames(path: Path, geometry: RawGeometry, start: int, count: int | None) -> FrameFile:
    """Frames [start, start+count) of a raw file; refuse a size that is not whole frames, with the numbers."""
    g = geometry
    if g.width % 2 or g.height % 2 or g.width <= 0 or g.height <= 0:
        raise InvalidSource(f"$.source: {g.width}x{g.height} ({g.origin}) is not an even size; yuv420p needs one")
    frame = frame_size(g.width, g.height, g.pix_fmt)
    size = path.stat().st_size
    if size == 0 or size % frame:
        raise InvalidSource(
            f"$.source: {path.name} holds {size} bytes, which is {size / frame:.3f} frames of {g.width}x{g.height} "
            f"{g.pix_fmt} ({frame} bytes each), not a whole number; the geometry ({g.origin}) does not fit the file: "
            "check width, height and pix_fmt"
        )
    return FrameFile.raw(path, g.width, g.height, g.pix_fmt, g.fps, start, count)

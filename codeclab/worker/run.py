"""One experiment, start to finish: reference, encode, decode, measure, write the artifacts."""

from __future__ import annotations

import csv
import importlib.metadata
import logging
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import codeclab
from codeclab.experiments.result import RESULT_SCHEMA_VERSION, Conditions, Environment, Metrics, Resources, Result
from codeclab.experiments.schema import SpecDocument
from codeclab.worker.codecs import Codec, StreamHeader, accept_reference, build_codec
from codeclab.worker.errors import CodecFailure, InvalidSource
from codeclab.worker.ffmpeg import library_versions
from codeclab.worker.metrics import measure_quality, metric_conditions, vmaf_per_frame, vmaf_version
from codeclab.worker.processes import children_peak_rss_mb, own_peak_rss_mb
from codeclab.worker.progress import Progress
from codeclab.worker.rate import rate_conditions, rate_metrics
from codeclab.worker.sources import Reference, load_reference
from codeclab.worker.video import FrameFile, FrameSource

log = logging.getLogger("codeclab.worker")

# VMAF is slow on CPU: "auto" measures it only up to 150 frames of 720p (or the same pixels).
VMAF_AUTO_MAX_PIXELS = 150 * 1280 * 720
QUALITY_KEYS = ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "ssim", "ms_ssim")
REFERENCE_Y4M, RECON_Y4M = "reference.y4m", "recon.y4m"


@dataclass(frozen=True)
class RunOptions:
    vmaf: bool | None = None  # None: follow the spec's metrics.vmaf
    keep_reference: bool | None = None  # None: follow the spec's artifacts.reference


@dataclass
class Measured:
    """What the run produced, gathered for result.json and metrics.csv."""

    reference: Reference
    codec: Codec
    bitstream: Path
    per_frame: list[dict[str, float]]
    timings: dict[str, float]
    vmaf_enabled: bool


class Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{name}_s"] = time.perf_counter() - start


def run_experiment(
    spec: SpecDocument, staging: Path, progress: Progress, options: RunOptions, codec: Codec | None = None
) -> Result:
    """Run a checked single-point spec; write every artifact into `staging`; return the result.

    `codec`: the spec's codec entry already built (`codeclab codec check` builds its package from the copy it
    unpacked and checked); by default it is built here."""
    try:
        return _measure(spec, staging, progress, options, codec)
    finally:
        drop_unkept_artifacts(spec, staging, options)


def drop_unkept_artifacts(spec: SpecDocument, staging: Path, options: RunOptions) -> None:
    """Delete the raw frame files the spec (or the worker's --no-reference) does not keep, before anything is
    published, whether the run succeeded or not: they are most of what a point would keep (3.7 GB for 600
    frames of 1080p), and a test set has hundreds of points."""
    kept = spec["artifacts"]
    reference = kept["reference"] if options.keep_reference is None else options.keep_reference
    for name, keep in ((REFERENCE_Y4M, reference), (RECON_Y4M, kept["recon"])):
        if not keep:
            (staging / name).unlink(missing_ok=True)


def _measure(spec: SpecDocument, staging: Path, progress: Progress, options: RunOptions, codec: Codec | None) -> Result:
    codec = build_codec(spec["codec"], spec["limits"].get("codec")) if codec is None else codec
    clock = Stopwatch()
    with tempfile.TemporaryDirectory(prefix="codeclab-") as tmp:
        ref_y4m = staging / REFERENCE_Y4M
        try:
            with clock.time("load"):
                reference = load_reference(
                    spec["source"], Path(tmp), ref_y4m, progress.stage("load", spec["source"].get("frames", 0))
                )
            video = reference.video
            accept_reference(codec, video.pix_fmt)
        except BaseException:
            ref_y4m.unlink(missing_ok=True)  # no reference is published for a source or a codec refused
            raise
        codec.protect_source([reference.path, Path(tmp), staging])
        bitstream = staging / f"bitstream{codec.bitstream_suffix}"
        with clock.time("setup"):
            codec.prepare()
        with clock.time("encode"):
            codec.encode(ref_y4m, bitstream, progress.stage("encode", video.frames))
        recon = staging / RECON_Y4M
        with clock.time("decode"):
            codec.decode_to(bitstream, StreamHeader.of(video), recon, progress.stage("decode"))
        decoded = _decoded(recon, video, codec.name)
        with clock.time("metrics"):
            per_frame = measure_quality(video, decoded, progress.stage("metrics"))
        vmaf_enabled = _vmaf_enabled(spec, options, video)
        if vmaf_enabled:
            with clock.time("vmaf"):
                scores = vmaf_per_frame(ref_y4m, recon, on_frame=progress.stage("vmaf"))
            for row, score in zip(per_frame, scores, strict=True):
                row["vmaf"] = score
    measured = Measured(reference, codec, bitstream, per_frame, clock.timings, vmaf_enabled)
    result = build_result(spec, measured)
    write_metrics_csv(per_frame, staging / "metrics.csv")
    return result


def _decoded(recon: Path, reference: FrameSource, codec: str) -> FrameFile:
    """The reconstruction the codec wrote, to be read frame by frame; refused unless it matches the reference."""
    try:
        decoded = FrameFile.y4m(recon)
    except (OSError, InvalidSource) as exc:
        raise CodecFailure(f"{codec} decoder wrote no readable reconstruction: {exc}") from None
    got = (decoded.frames, decoded.height, decoded.width, decoded.pix_fmt)
    want = (reference.frames, reference.height, reference.width, reference.pix_fmt)
    if got != want:
        raise CodecFailure(
            f"{codec} decoder returned {got[0]} frames of {got[2]}x{got[1]} {got[3]}, "
            f"expected {want[0]} of {want[2]}x{want[1]} {want[3]}"
        )
    return decoded


def _vmaf_enabled(spec: SpecDocument, options: RunOptions, video: FrameSource) -> bool:
    if options.vmaf is not None:
        return options.vmaf
    setting = spec["metrics"]["vmaf"]
    if setting == "auto":
        return video.width * video.height * video.frames <= VMAF_AUTO_MAX_PIXELS
    return bool(setting)


def build_result(spec: SpecDocument, m: Measured) -> Result:
    video = m.reference.video
    size = m.bitstream.stat().st_size

    def mean(key: str) -> float:
        return float(np.mean([row[key] for row in m.per_frame]))

    rate = rate_metrics(size, video)
    metrics: Metrics = {
        "psnr_y": mean("psnr_y"),
        "psnr_u": mean("psnr_u"),
        "psnr_v": mean("psnr_v"),
        "psnr_yuv": mean("psnr_yuv"),
        "ssim": mean("ssim"),
        "ms_ssim": mean("ms_ssim"),
        "vmaf": mean("vmaf") if m.vmaf_enabled else None,
        "bpp": rate["bpp"],
        "kbps": rate["kbps"],
        "compression_ratio": rate["compression_ratio"],
        "encode_fps": video.frames / m.timings["encode_s"],
        "decode_fps": video.frames / m.timings["decode_s"],
    }
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "status": "SUCCEEDED",
        "name": spec["name"],
        "spec": spec,
        "conditions": _conditions(m),
        "metrics": metrics,
        "bitstream": {"file": m.bitstream.name, "bytes": size},
        "frames": video.frames,
        "timings": {k: round(v, 4) for k, v in m.timings.items()},
        "resources": resources(m.codec.device),
        "environment": environment(),
    }


def _conditions(m: Measured) -> Conditions:
    metrics = metric_conditions(m.reference.video.bit_depth)
    if m.vmaf_enabled:
        metrics["vmaf_version"] = vmaf_version()
    else:
        metrics["vmaf"] = "not measured"
    return {
        "source": m.reference.info,
        "codec": m.codec.conditions(),
        "metrics": metrics,
        "rate": rate_conditions(m.reference.video.bit_depth),
    }


def resources(device: str) -> Resources:
    """The device the codec ran on, and the peak resident memory of the worker itself and of its largest ffmpeg
    child, each its own (not what a process inherits at exec), in MiB; see docs/worker.md for what they cover."""
    own, children = own_peak_rss_mb(), children_peak_rss_mb()
    return {"device": device, "peak_rss_mb_worker": round(own, 1), "peak_rss_mb_children": round(children, 1)}


def environment() -> Environment:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "codeclab": codeclab.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ffmpeg": library_versions(),
        "packages": {
            p: version(p) for p in ("numpy", "numba", "opencv-python-headless", "av", "imageio-ffmpeg", "torch")
        },
    }


def write_metrics_csv(per_frame: list[dict[str, float]], path: Path) -> None:
    columns = ["frame", *QUALITY_KEYS, "vmaf"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for index, row in enumerate(per_frame):
            writer.writerow({"frame": index, **{k: _fmt(row.get(k)) for k in columns[1:]}})


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"

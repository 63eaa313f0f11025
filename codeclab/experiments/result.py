"""The worker's result: result.json's one shape, the part of it a record keeps, and its one summary line.

The worker writes a `Result` (or a `FailedResult`); RecordResult keeps its `Measurement` in the record
(the `result` attribute) with its conditions and artifacts; the report reads result.json itself.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict, cast

from codeclab.experiments.schema import SpecDocument

RESULT_SCHEMA_VERSION = 1
# Open by nature: each codec records its own tool versions and settings.
CodecConditions = dict[str, Any]


class PackageConditions(TypedDict):
    """`conditions.codec.package` of a codec package's run: what it was, down to its weights."""

    name: str
    version: str
    tree_sha256: str  # the package's content (codeclab.worker.packages.unpack.tree_sha256)
    weights: dict[str, str]  # file -> sha256, as codec.json lists and the worker checked them
    rate_param: NotRequired[str]  # codec.json's rate_param: the param a report moves along a curve


class Metrics(TypedDict):
    psnr_y: float
    psnr_u: float
    psnr_v: float
    psnr_yuv: float
    ssim: float
    ms_ssim: float
    vmaf: float | None  # None when not measured (see conditions.metrics.vmaf)
    bpp: float
    kbps: float
    compression_ratio: float
    encode_fps: float
    decode_fps: float


class Bitstream(TypedDict):
    file: str
    bytes: int


class Resources(TypedDict):
    device: str
    peak_rss_mb_worker: float
    peak_rss_mb_children: float


# Where the reference frames came from and how they were made. The functional form, because one field is named
# `class`. Results written before 10-bit support lack sequence and bit_depth (read them as the clip's stem and 8).
SourceConditions = TypedDict(
    "SourceConditions",
    {
        "clip": str,
        "file": str,
        "sha256": str,
        "sequence": NotRequired[str],
        "class": NotRequired[str],
        "source_size": list[int],
        "source_pix_fmt": str,
        "source_fps": str,
        "raw_geometry": NotRequired[str],  # a raw .yuv clip's: where its width, height, pix_fmt and fps came from
        "start": int,
        "frames": int,
        "crop": list[int] | None,
        "size": list[int],
        "scaling": str,
        "fps": str,
        "pix_fmt": str,  # of what was measured
        "bit_depth": NotRequired[int],  # of what was measured
        "bit_depth_conversion": NotRequired[str],
        "colour_handling": str,
    },
)


class Conditions(TypedDict):
    """The test conditions written next to every figure: what a report checks before comparing two results."""

    source: SourceConditions
    codec: CodecConditions
    metrics: dict[str, str]
    rate: str


class Environment(TypedDict):
    codeclab: str
    python: str
    platform: str
    ffmpeg: dict[str, str]
    packages: dict[str, str | None]


class WorkerFailureInfo(TypedDict):
    type: str  # a WorkerErrorType
    message: str
    exit_code: int


class Measurement(TypedDict):
    """What a record keeps of a successful result, as its `result` attribute."""

    metrics: Metrics
    bitstream: Bitstream
    frames: int
    timings: dict[str, float]  # seconds by stage: load_s, encode_s, ..., total_s
    resources: Resources


class Result(Measurement):
    """result.json of a point that SUCCEEDED."""

    schema_version: int
    status: Literal["SUCCEEDED"]
    name: str
    spec: SpecDocument
    conditions: Conditions
    environment: Environment
    artifacts: NotRequired[dict[str, str]]  # name -> where it was published; added as it is published


class FailedResult(TypedDict):
    """result.json of a point that FAILED: what went wrong, and as much of the run as is known."""

    schema_version: int
    status: Literal["FAILED"]
    name: str | None
    spec: SpecDocument | None
    error: WorkerFailureInfo
    timings: dict[str, float]
    environment: Environment
    artifacts: NotRequired[dict[str, str]]


AnyResult = Result | FailedResult


def measurement(result: Result) -> Measurement:
    """The part of a result that the record keeps."""
    return {
        "metrics": result["metrics"],
        "bitstream": result["bitstream"],
        "frames": result["frames"],
        "timings": result["timings"],
        "resources": result["resources"],
    }


def summary_line(result: Result) -> str:
    """One line for logs and notifications: codec, size and the headline figures."""
    m = result["metrics"]
    return (
        f"{result['spec']['codec']['name']} {result['bitstream']['bytes']} bytes, {m['bpp']:.4f} bpp, "
        f"PSNR-YUV {m['psnr_yuv']:.2f} dB, SSIM {m['ssim']:.4f}"
    )


class ResultError(ValueError):
    """A result.json that is not one the worker writes: not JSON, or without a field its status needs."""


_REQUIRED: dict[str, tuple[str, ...]] = {
    "SUCCEEDED": ("name", "spec", "conditions", "metrics", "bitstream", "frames", "timings", "resources"),
    "FAILED": ("error",),
}


def parse_result(data: bytes | str, origin: str) -> AnyResult:
    """result.json's text, checked for the fields its status promises, so a reader never meets a KeyError."""
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultError(f"{origin} is not JSON: {exc}") from None
    status = value.get("status") if isinstance(value, dict) else None
    if status not in _REQUIRED:
        raise ResultError(f"{origin}: status must be SUCCEEDED or FAILED, not {str(status)[:40]!r}")
    missing = [name for name in _REQUIRED[status] if name not in value]
    if missing:
        raise ResultError(f"{origin}: a {status} result needs {', '.join(missing)}")
    return cast(AnyResult, value)

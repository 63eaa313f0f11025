"""`custom`: the researcher's own Python codec, encoder and decoder each run in the sandbox.

The module defines `encode(frames, params) -> bytes`, where frames is {"y", "u", "v"} uint8
arrays of shapes (N, H, W) and (N, H/2, W/2), and `decode(bitstream, header) -> frames`,
where header is {"width", "height", "frames", "fps"} and the result is the same planes or an
(N, H, W, 3) uint8 RGB array. The decoder sees only the bitstream bytes and that header.
The rate is the length of the bytes encode() returned, as the worker received them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codeclab.experiments.result import CodecConditions
from codeclab.experiments.schema import CodecParams, CodecSpec
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.colour import RGB_CONVERSION, rgb_to_yuv420
from codeclab.worker.errors import InvalidSpec, SandboxViolation
from codeclab.worker.sandbox.layers import Applied, SandboxLimits, SandboxPolicy, codec_limits
from codeclab.worker.sandbox.protocol import RGB_FRAMES, YUV420_PLANES, PublicHeader
from codeclab.worker.sandbox.runner import ChildJob, run_child
from codeclab.worker.sandbox.static_check import allowed_imports, check_source
from codeclab.worker.sources import read_s3_text
from codeclab.worker.video import FrameCallback, FrameFile, Video, write_y4m

# Far beyond the raw video it codes, a bitstream is a broken codec or an attempt to fill the disk.
MAX_EXPANSION, SLACK_BYTES = 2, 1 << 20
LAYERS = (
    "AST/import check; encoder and decoder in separate processes, fed and read over pipes only; a uid of their "
    "own with no capabilities; RLIMIT_NPROC; Landlock (read: interpreter and allowed packages; write: scratch); "
    "seccomp-bpf; a size-capped scratch tmpfs; fresh mount/IPC/network namespaces where the kernel allows; "
    "rlimits; scrubbed environment; wall-clock timeout"
)


class CustomCodec(Codec):
    name = "custom"
    summary = "your own Python codec, run in the sandbox"
    bitstream_suffix = ".bin"

    def __init__(
        self,
        params: CodecParams,
        entry: CodecSpec,
        limits: SandboxLimits | None = None,
        policy: SandboxPolicy | None = None,
    ) -> None:
        super().__init__(params)
        self.code = load_code(entry)
        allowed = allowed_imports(entry.get("allow_imports", []))
        self._sandbox(check_source(self.code, allowed), allowed, bool(entry.get("trusted", False)), limits, policy)

    def _sandbox(
        self,
        imported: list[str],
        allowed: frozenset[str],
        trusted: bool,
        limits: SandboxLimits | None,
        policy: SandboxPolicy | None,
    ) -> None:
        self.trusted = trusted
        self.policy = policy or SandboxPolicy.for_code(self.trusted)
        self.limits = limits or codec_limits({}, has_cuda())
        self.allowed = sorted(allowed)
        # every module the code imports is loaded in the child under the layers, before any user code
        self.preload = sorted({"numpy", *imported})
        self.hidden: list[Path] = []
        self.applied: dict[str, Applied] = {}  # "encoder"/"decoder" -> what the worker verified in that child

    def protect_source(self, copies: Sequence[Path]) -> None:
        self.hidden = list(copies)

    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        video = FrameFile.y4m(reference)
        payload = _planes_payload(video)
        cap = MAX_EXPANSION * video.raw_bytes + SLACK_BYTES
        job = self._job("encode", StreamHeader.of(video), payload, cap)
        result = run_child(job, self.limits, self.policy, on_frame)
        self.applied["encoder"] = result.applied
        bitstream.write_bytes(result.output)
        on_frame(video.frames)

    def decode_to(self, bitstream: Path, header: StreamHeader, out: Path, on_frame: FrameCallback) -> None:
        sizes = _frame_sizes(header)
        job = self._job("decode", header, bitstream.read_bytes(), 1 + max(sizes.values()))
        result = run_child(job, self.limits, self.policy, on_frame)
        self.applied["decoder"] = result.applied
        video = _as_video(result.output, header, sizes)
        write_y4m(video, out)
        on_frame(video.frames)

    def _job(self, role: str, header: StreamHeader, payload: bytes | bytearray, max_output: int) -> ChildJob:
        public = PublicHeader(header.width, header.height, header.frames, str(header.fps))
        return ChildJob(
            role=role, code=self.code, header=public, payload=payload, max_output_bytes=max_output,
            params=self.params if role == "encode" else {}, allowed_imports=self.allowed, preload=self.preload,
            hidden=self.hidden,
        )  # fmt: skip

    def conditions(self) -> CodecConditions:
        return {
            "codec": self.name,
            "implementation": f"user code, sha256 {hashlib.sha256(self.code.encode()).hexdigest()}",
            "params": self.params,
            "sandbox": {
                "layers": LAYERS,
                "trusted": self.trusted,
                "required": sorted(self.policy.required),
                "cpu_seconds": self.limits.cpu_seconds,
                "wall_seconds": self.limits.wall_seconds,
                "address_space_bytes": self.limits.address_space_bytes,
                "scratch_bytes": self.limits.scratch_bytes,
                "max_threads": self.limits.max_threads,
                "allowed_imports": self.allowed,
                **{role: applied.as_conditions() for role, applied in self.applied.items()},
            },
            "bitstream_format": "the bytes encode() returned, as they are",
            "colour_conversion": f"only if decode() returns RGB: {RGB_CONVERSION}",
        }


def load_code(entry: CodecSpec) -> str:
    if "code" in entry:
        return str(entry["code"])
    if "code_uri" not in entry:
        raise InvalidSpec("$.codec: a custom codec needs code or code_uri")
    uri = str(entry["code_uri"])
    if uri.startswith("s3://"):
        return read_s3_text(uri, "codec source")
    path = Path(uri).expanduser()
    if not path.is_file():
        raise InvalidSpec(f"$.codec.code_uri: no such file {uri!r}")
    return path.read_text(encoding="utf-8")


def _planes_payload(video: FrameFile) -> bytearray:
    """The clip as the child takes it, all of y, then all of u, then all of v, read from the file frame by frame
    into the one buffer: the worker holds the clip once."""
    luma, chroma = video.width * video.height, video.width * video.height // 4
    payload = bytearray(video.frames * (luma + 2 * chroma))
    view = memoryview(payload)
    starts = (0, video.frames * luma, video.frames * (luma + chroma))
    for index in range(video.frames):
        for start, size, plane in zip(starts, (luma, chroma, chroma), video.frame_planes(index), strict=True):
            view[start + index * size : start + (index + 1) * size] = plane.tobytes()
    return payload


def _frame_sizes(header: StreamHeader) -> dict[bytes, int]:
    """Bytes of decoded frames in each layout the child may send: the worker knows them before reading."""
    n, h, w = header.frames, header.height, header.width
    return {YUV420_PLANES: n * h * w + 2 * n * (h // 2) * (w // 2), RGB_FRAMES: n * h * w * 3}


def _as_video(output: bytearray, header: StreamHeader, sizes: dict[bytes, int]) -> Video:
    layout, data = bytes(output[:1]), memoryview(output)[1:]
    if sizes.get(layout) != len(data):
        raise SandboxViolation(
            f"custom codec decoder sent {len(data)} bytes of frames in layout {layout!r}, not the "
            f"{sizes.get(YUV420_PLANES)} of yuv420p planes or the {sizes.get(RGB_FRAMES)} of RGB frames it must send"
        )
    n, h, w = header.frames, header.height, header.width
    if layout == RGB_FRAMES:
        rgb = np.frombuffer(data, np.uint8).reshape(n, h, w, 3)
        planes = [rgb_to_yuv420(frame) for frame in rgb]
        y, u, v = (np.stack(p) for p in zip(*planes, strict=True))
        return Video(y, u, v, header.fps)
    luma, chroma = n * h * w, n * (h // 2) * (w // 2)
    y = np.frombuffer(data, np.uint8, luma).reshape(n, h, w)
    u = np.frombuffer(data, np.uint8, chroma, luma).reshape(n, h // 2, w // 2)
    v = np.frombuffer(data, np.uint8, chroma, luma + chroma).reshape(n, h // 2, w // 2)
    return Video(y, u, v, header.fps)


def has_cuda() -> bool:
    return Path("/dev/nvidiactl").exists()

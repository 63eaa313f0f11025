"""`custom`: the researcher's own Python codec, encoder and decoder each run in the sandbox.

The module defines `encode(frames, params) -> bytes`, where frames is {"y", "u", "v"} uint8
arrays of shapes (N, H, W) and (N, H/2, W/2), and `decode(bitstream, header) -> frames`,
where header is {"width", "height", "frames", "fps"} and the result is the same planes or an
(N, H, W, 3) uint8 RGB array. The decoder sees only the bitstream bytes and that header.
The rate is the length of the bytes encode() returned.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.colour import RGB_CONVERSION, rgb_to_yuv420
from codeclab.worker.errors import CodecFailure, InvalidInput, SandboxViolation
from codeclab.worker.sandbox.policy import allowed_imports, check_source
from codeclab.worker.sandbox.runner import SandboxLimits, decoded_arrays, run_child
from codeclab.worker.sources import read_s3_text
from codeclab.worker.video import FrameCallback, Video, read_y4m

# Far beyond the raw video it codes, a bitstream is a broken codec or an attempt to fill the disk.
MAX_EXPANSION, SLACK_BYTES = 2, 1 << 20


class CustomCodec(Codec):
    name = "custom"
    summary = "your own Python codec, run in the sandbox"
    bitstream_suffix = ".bin"

    def __init__(self, params: dict[str, Any], entry: dict[str, Any], limits: SandboxLimits | None = None) -> None:
        super().__init__(params)
        self.applied: dict[str, Any] = {}  # the layers the encoder's child applied on this host
        self.code = load_code(entry)
        allowed = allowed_imports(entry.get("allow_imports", []))
        imported = check_source(self.code, allowed)
        base = limits or SandboxLimits(address_space_bytes=None if _has_cuda() else SandboxLimits().address_space_bytes)
        # every module the code imports is loaded before the uid drop and the filters
        self.limits = replace(base, allowed_imports=sorted(allowed), preload=sorted({"numpy", *imported}))

    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        video = read_y4m(reference)
        frames = io.BytesIO()
        np.savez(frames, y=video.y, u=video.u, v=video.v)
        inputs = {"frames.npz": frames.getvalue(), "params.json": json.dumps(self.params).encode()}
        outputs = run_child("encode", self.code, inputs, self.limits)
        self.applied = json.loads(outputs["sandbox.json"])
        data = outputs["bitstream.bin"]
        cap = MAX_EXPANSION * video.raw_bytes + SLACK_BYTES
        if len(data) > cap:
            raise SandboxViolation(
                f"custom codec bitstream is {len(data)} bytes, over its cap of {cap} (2x raw + 1 MiB)"
            )
        bitstream.write_bytes(data)
        on_frame(video.frames)

    def decode(self, bitstream: Path, header: StreamHeader, on_frame: FrameCallback) -> Video:
        public = {"width": header.width, "height": header.height, "frames": header.frames, "fps": str(header.fps)}
        inputs = {"bitstream.bin": bitstream.read_bytes(), "header.json": json.dumps(public).encode()}
        arrays = decoded_arrays(run_child("decode", self.code, inputs, self.limits)["decoded.npz"])
        video = _as_video(arrays, header)
        on_frame(video.frames)
        return video

    def conditions(self) -> dict[str, Any]:
        return {
            "codec": self.name,
            "implementation": f"user code, sha256 {hashlib.sha256(self.code.encode()).hexdigest()}",
            "params": self.params,
            "sandbox": {
                "layers": "AST/import check, separate encoder and decoder processes, seccomp-bpf, rlimits, "
                "scrubbed environment, private folder, uid drop when root, wall-clock timeout",
                "cpu_seconds": self.limits.cpu_seconds,
                "wall_seconds": self.limits.wall_seconds,
                "address_space_bytes": self.limits.address_space_bytes,
                "allowed_imports": self.limits.allowed_imports,
                "applied_on_this_host": self.applied,
            },
            "bitstream_format": "the bytes encode() returned, as they are",
            "colour_conversion": f"only if decode() returns RGB: {RGB_CONVERSION}",
        }


def load_code(entry: dict[str, Any]) -> str:
    if "code" in entry:
        return str(entry["code"])
    if "code_uri" not in entry:
        raise InvalidInput("$.codec: a custom codec needs code or code_uri", "INVALID_SPEC")
    uri = str(entry["code_uri"])
    if uri.startswith("s3://"):
        return read_s3_text(uri, "codec source")
    path = Path(uri).expanduser()
    if not path.is_file():
        raise InvalidInput(f"$.codec.code_uri: no such file {uri!r}", "INVALID_SPEC")
    return path.read_text(encoding="utf-8")


def _as_video(arrays: dict[str, Any], header: StreamHeader) -> Video:
    n, h, w = header.frames, header.height, header.width
    if "rgb" in arrays:
        rgb = arrays["rgb"]
        _expect(rgb, (n, h, w, 3), "RGB frames")
        planes = [rgb_to_yuv420(frame) for frame in rgb]
        y, u, v = (np.stack(p) for p in zip(*planes, strict=True))
        return Video(y, u, v, header.fps)
    for name, shape in (("y", (n, h, w)), ("u", (n, h // 2, w // 2)), ("v", (n, h // 2, w // 2))):
        _expect(arrays.get(name), shape, f"plane {name}")
    return Video(arrays["y"], arrays["u"], arrays["v"], header.fps)


def _expect(array: Any, shape: tuple[int, ...], what: str) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
        got = "nothing" if not isinstance(array, np.ndarray) else f"{array.dtype} {array.shape}"
        raise CodecFailure(f"custom decoder returned {what} as {got}; expected uint8 {shape}")


def _has_cuda() -> bool:
    return Path("/dev/nvidiactl").exists()

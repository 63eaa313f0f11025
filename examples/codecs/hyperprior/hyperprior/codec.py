"""The entry module of the built-in learned codec exported as a codec package (`codeclab codec export-learned`).

It is copied into the package as `codec.py`, beside copies of model.py, entropy.py, frame_coder.py, stream.py
and framing.py whose codeclab imports become relative ones. It writes the same CLN1 stream as the built-in
codec, byte for byte, from the one weights file the package ships. The decoder sees only the bitstream and
the header, and loads the weights itself.
"""

import io
import json
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .framing import write_payload
from .frame_coder import FrameCoder
from .model import RECORD_KEY, load_network
from .stream import StreamInfo, read_stream

WEIGHTS = "weights.safetensors"
# The built-in codec's default `threads`: float sums, so the reconstruction's bytes, can depend on it.
THREADS = 2


def encode(frames: dict[str, np.ndarray], params: dict[str, Any], ctx: Any) -> bytes:
    coder, quality, fingerprint = _coder(ctx)
    count, height, width = frames["y"].shape
    out = io.BytesIO()
    out.write(StreamInfo(quality, fingerprint, width, height, count, Fraction(ctx.fps)).pack())
    for index in range(count):
        payload, _ = coder.encode((frames["y"][index], frames["u"][index], frames["v"][index]))
        write_payload(out, payload)
        ctx.progress(index + 1)
    return out.getvalue()


def decode(bitstream: bytes, header: dict[str, Any], ctx: Any) -> dict[str, np.ndarray]:
    coder, quality, fingerprint = _coder(ctx)
    info, payloads = read_stream(bitstream)
    info.check_weights(quality, fingerprint)
    planes = []
    for index, payload in enumerate(payloads):
        planes.append(coder.decode(bytes(payload), info.width, info.height))
        ctx.progress(index + 1)
    return {name: np.stack(plane) for name, plane in zip("yuv", zip(*planes, strict=True), strict=True)}


def _coder(ctx: Any) -> tuple[FrameCoder, int, bytes]:
    """The frame coder on ctx.device, the weights' quality, and the first 4 bytes of their checked sha256."""
    torch.set_num_threads(THREADS)
    record = json.loads(ctx.weights_metadata(WEIGHTS)[RECORD_KEY])
    net = load_network(ctx.weights(WEIGHTS), record)
    fingerprint = bytes.fromhex(ctx.weights_sha256(WEIGHTS))[:4]
    return FrameCoder(net, torch.device(ctx.device)), record["quality"], fingerprint

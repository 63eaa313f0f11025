"""The entry module of the built-in learned codec exported as a codec package (`codeclab codec export-learned`).

It is copied into the package as `codec.py`, beside copies of model.py, entropy.py, frame_coder.py, stream.py
and framing.py whose codeclab imports become relative ones. It writes the same CLN1 stream as the built-in
codec, byte for byte, from the weights file of the `quality` param (qQ.safetensors, one per quality the
package ships). The decoder sees only the bitstream and the header: the stream names its quality, and the
decoder loads that quality's weights itself.
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

# The built-in codec's default `threads`: float sums, so the reconstruction's bytes, can depend on it.
THREADS = 2


def weights_file(quality: int) -> str:
    """The package's weights file for a quality level, as `codeclab codec export-learned` names it."""
    return f"q{quality}.safetensors"


def encode(frames: dict[str, np.ndarray], params: dict[str, Any], ctx: Any) -> bytes:
    coder, fingerprint = _coder(ctx, params["quality"])
    count, height, width = frames["y"].shape
    out = io.BytesIO()
    out.write(StreamInfo(params["quality"], fingerprint, width, height, count, Fraction(ctx.fps)).pack())
    for index in range(count):
        payload = coder.encode((frames["y"][index], frames["u"][index], frames["v"][index]))
        write_payload(out, payload)
        ctx.progress(index + 1)
    return out.getvalue()


def decode(bitstream: bytes, header: dict[str, Any], ctx: Any) -> dict[str, np.ndarray]:
    info, payloads = read_stream(bitstream)
    coder, fingerprint = _coder(ctx, info.quality)  # the stream names its quality, so its weights
    info.check_weights(info.quality, fingerprint)
    planes = []
    for index, payload in enumerate(payloads):
        planes.append(coder.decode(bytes(payload), info.width, info.height))
        ctx.progress(index + 1)
    return {name: np.stack(plane) for name, plane in zip("yuv", zip(*planes, strict=True), strict=True)}


def _coder(ctx: Any, quality: int) -> tuple[FrameCoder, bytes]:
    """The frame coder of a quality's weights on ctx.device, and the first 4 bytes of their checked sha256."""
    torch.set_num_threads(THREADS)
    name = weights_file(quality)
    record = json.loads(ctx.weights_metadata(name)[RECORD_KEY])
    if record["quality"] != quality:
        raise ValueError(f"{name} holds the weights of quality {record['quality']}, not {quality}")
    net = load_network(ctx.weights(name), record)
    fingerprint = bytes.fromhex(ctx.weights_sha256(name))[:4]
    return FrameCoder(net, torch.device(ctx.device)), fingerprint

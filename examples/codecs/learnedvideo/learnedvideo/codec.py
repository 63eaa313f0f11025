"""The entry module of the built-in learned codec exported as a codec package (`codeclab codec export-learned`).

It is copied into the package as `codec.py`, beside copies of the codec's own modules whose codeclab imports
become relative ones. It writes the same CLN2 stream as the built-in codec, byte for byte, from the package's
one weights file. The decoder sees only the bitstream and the header: the stream names its quality and intra
period.
"""

import io
import json
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .framing import write_payload
from .frame_coder import FrameCoder, SequenceDecoder, SequenceEncoder
from .model import RECORD_KEY, load_network
from .stream import StreamInfo, read_stream

# The built-in codec's default `threads`, so the package writes its bytes; a decoder uses the stream's.
THREADS = 2
WEIGHTS_FILE = "video.safetensors"


def encode(frames: dict[str, np.ndarray], params: dict[str, Any], ctx: Any) -> bytes:
    coder, fingerprint, qualities = _coder(ctx)
    quality, period = params["quality"], params["intra_period"]
    if quality > qualities:
        raise ValueError(f"quality {quality}: the package's weights have levels 1 to {qualities}")
    count, height, width = frames["y"].shape
    out = io.BytesIO()
    out.write(StreamInfo(quality, period, THREADS, fingerprint, width, height, count, Fraction(ctx.fps)).pack())
    sequence = SequenceEncoder(coder, quality, period)
    for index in range(count):
        write_payload(out, sequence.encode((frames["y"][index], frames["u"][index], frames["v"][index])))
        ctx.progress(index + 1)
    return out.getvalue()


def decode(bitstream: bytes, header: dict[str, Any], ctx: Any) -> dict[str, np.ndarray]:
    info, payloads = read_stream(bitstream)
    coder, fingerprint, qualities = _coder(ctx)
    info.check_weights(fingerprint, qualities)
    torch.set_num_threads(info.threads)  # the encoder's: see stream.py
    sequence = SequenceDecoder(coder, info.quality, info.intra_period, info.width, info.height)
    planes = []
    for index, payload in enumerate(payloads):
        planes.append(sequence.decode(bytes(payload)))
        ctx.progress(index + 1)
    return {name: np.stack(plane) for name, plane in zip("yuv", zip(*planes, strict=True), strict=True)}


def _coder(ctx: Any) -> tuple[FrameCoder, bytes, int]:
    """The frame coder on ctx.device, the first 4 bytes of the weights' checked sha256, and their quality levels."""
    torch.set_num_threads(THREADS)
    record = json.loads(ctx.weights_metadata(WEIGHTS_FILE)[RECORD_KEY])
    net = load_network(ctx.weights(WEIGHTS_FILE), record)
    fingerprint = bytes.fromhex(ctx.weights_sha256(WEIGHTS_FILE))[:4]
    return FrameCoder(net, torch.device(ctx.device)), fingerprint, net.arch.qualities

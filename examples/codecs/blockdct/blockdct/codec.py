"""The entry module: encode(frames, params, ctx) -> bytes and decode(bitstream, header, ctx) -> frames.

params: {"step": 12} (the luma quantiser step; chroma uses twice it). The stream is a small header and the
zlib-compressed int16 levels; decode needs nothing else but the same basis, which it loads itself.
"""

import struct
import zlib
from typing import Any

import numpy as np

from . import transform

HEADER = struct.Struct("<4sHH")  # magic, luma step, chroma step
PLANES = ("y", "u", "v")


def _basis(ctx: Any) -> np.ndarray:
    return np.asarray(ctx.weights("basis.safetensors")["basis"], dtype=np.float32)


def encode(frames: dict[str, np.ndarray], params: dict[str, Any], ctx: Any) -> bytes:
    basis, step = _basis(ctx), int(params["step"])
    levels = []
    for name in PLANES:
        tiles = transform.blocks(frames[name]).astype(np.float32) - 128.0
        quantiser = step if name == "y" else 2 * step
        levels.append(np.round(transform.forward(tiles, basis) / quantiser).astype(np.int16).tobytes())
    ctx.progress(len(frames["y"]))
    return HEADER.pack(b"BDC1", step, 2 * step) + zlib.compress(b"".join(levels), 9)


def decode(bitstream: bytes, header: dict[str, Any], ctx: Any) -> dict[str, np.ndarray]:
    magic, step, chroma_step = HEADER.unpack_from(bitstream)
    if magic != b"BDC1":
        raise ValueError("not a blockdct stream")
    basis, payload = _basis(ctx), zlib.decompress(bitstream[HEADER.size :])
    n, h, w = header["frames"], header["height"], header["width"]
    planes, offset = {}, 0
    for name, (ph, pw), quantiser in zip(PLANES, [(h, w), (h // 2, w // 2), (h // 2, w // 2)],
                                         (step, chroma_step, chroma_step), strict=True):  # fmt: skip
        bh, bw = -(-ph // transform.BLOCK), -(-pw // transform.BLOCK)
        count = n * bh * bw * transform.BLOCK * transform.BLOCK
        levels = np.frombuffer(payload, dtype=np.int16, count=count, offset=offset)
        tiles = levels.reshape(n, bh, bw, transform.BLOCK, transform.BLOCK).astype(np.float32) * quantiser
        pixels = transform.unblocks(transform.inverse(tiles, basis) + 128.0, ph, pw)
        planes[name] = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        offset += count * 2
    ctx.progress(n)
    return planes

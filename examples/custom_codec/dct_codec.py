"""A small custom codec: 8x8 block DCT, uniform quantisation, zlib.

encode(frames, params) gets {"y", "u", "v"} uint8 planes, (N, H, W) and (N, H/2, W/2),
and returns the bitstream as bytes. decode(bitstream, header) gets only those bytes and
{"width", "height", "frames", "fps"}, and returns the planes again. params: {"step": 12}
(the quantiser step; chroma uses twice it). Everything decode() needs is in the bytes.
"""

import math
import struct
import zlib

import numpy as np

BLOCK = 8
HEADER = struct.Struct("<4sHH")  # magic, luma step, chroma step


def _dct_matrix() -> np.ndarray:
    k = np.arange(BLOCK)
    matrix = np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
    matrix[0] /= math.sqrt(2)
    return matrix


DCT = _dct_matrix()


def _blocks(plane: np.ndarray) -> np.ndarray:
    n, h, w = plane.shape
    return plane.reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 1, 3, 2, 4)


def _unblocks(blocks: np.ndarray) -> np.ndarray:
    n, bh, bw, _, _ = blocks.shape
    return blocks.transpose(0, 1, 3, 2, 4).reshape(n, bh * BLOCK, bw * BLOCK)


def _pad(plane: np.ndarray) -> np.ndarray:
    _, h, w = plane.shape
    return np.pad(plane, ((0, 0), (0, -h % BLOCK), (0, -w % BLOCK)), mode="edge")


def _code_plane(plane: np.ndarray, step: int) -> bytes:
    blocks = _blocks(_pad(plane).astype(np.float32) - 128.0)
    coefficients = DCT @ blocks @ DCT.T
    return np.round(coefficients / step).astype(np.int16).tobytes()


def _decode_plane(data: bytes, n: int, h: int, w: int, step: int) -> np.ndarray:
    ph, pw = h + (-h % BLOCK), w + (-w % BLOCK)
    levels = np.frombuffer(data, dtype=np.int16).reshape(n, ph // BLOCK, pw // BLOCK, BLOCK, BLOCK)
    pixels = DCT.T @ (levels.astype(np.float32) * step) @ DCT + 128.0
    return np.clip(np.round(_unblocks(pixels)), 0, 255).astype(np.uint8)[:, :h, :w]


def encode(frames: dict, params: dict) -> bytes:
    step = int(params.get("step", 12))
    payload = b"".join(_code_plane(frames[p], step if p == "y" else 2 * step) for p in ("y", "u", "v"))
    return HEADER.pack(b"DCT1", step, 2 * step) + zlib.compress(payload, 9)


def decode(bitstream: bytes, header: dict) -> dict:
    magic, step, chroma_step = HEADER.unpack_from(bitstream)
    assert magic == b"DCT1", "not a DCT1 stream"
    payload = zlib.decompress(bitstream[HEADER.size :])
    n, h, w = header["frames"], header["height"], header["width"]
    sizes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    planes, offset = {}, 0
    for name, (ph, pw), s in zip(("y", "u", "v"), sizes, (step, chroma_step, chroma_step), strict=True):
        count = n * (ph + (-ph % BLOCK)) * (pw + (-pw % BLOCK)) * 2
        planes[name] = _decode_plane(payload[offset : offset + count], n, ph, pw, s)
        offset += count
    return planes

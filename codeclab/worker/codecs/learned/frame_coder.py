"""One frame through the scale hyperprior: planes -> range-coded payload -> planes.

The encoder synthesises its reconstruction from the same integer latents the decoder
recovers, so encode and decode share every step after quantisation. Table indexes come
from the hyper-synthesis run in float64 on the CPU, whatever device the transforms use:
a GPU encode and a CPU decode still agree on every probability table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

from codeclab.worker.codecs.learned.entropy import (
    Decoder,
    Encoder,
    SymbolTable,
    gaussian_tables,
    prior_tables,
    scale_indexes,
)
from codeclab.worker.codecs.learned.model import ALIGN, SCALE_BOUND, ScaleHyperprior, pack_yuv420, unpack_yuv420

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LatentShape:
    """Where the symbols sit for a frame of a given size (padded up to ALIGN luma samples)."""

    y: tuple[int, int, int]
    z: tuple[int, int, int]

    @classmethod
    def of(cls, width: int, height: int, m: int, n: int) -> LatentShape:
        padded_h, padded_w = _ceil_to(height, ALIGN), _ceil_to(width, ALIGN)
        return cls((m, padded_h // 16, padded_w // 16), (n, padded_h // 64, padded_w // 64))


class FrameCoder:
    def __init__(self, net: ScaleHyperprior, device: torch.device) -> None:
        self.device = device
        self.net = copy.deepcopy(net).to(device)
        self.hyper_synthesis = copy.deepcopy(net.h_s).to("cpu", torch.float64)
        self.z_tables = prior_tables(net.prior)
        self.y_tables = _gaussian_tables()
        self.arch = net.arch

    @torch.inference_mode()
    def encode(self, planes: Planes) -> tuple[bytes, Planes]:
        """The frame's payload, and the reconstruction that decoding it will give."""
        height, width = planes[0].shape
        x = _packed(planes, self.device)
        latents = self.net.g_a(x)
        z = torch.round(self.net.h_a(latents.abs()))[0].cpu().to(torch.int64).numpy()
        y = torch.round(latents)[0].cpu().to(torch.int64).numpy()
        coder = Encoder()
        for channel, table in zip(z, self.z_tables, strict=True):
            coder.encode(channel.ravel(), table)
        coder.flush_escapes()
        flat_y, indexes = y.ravel(), self._indexes(z)
        for group, table in self._groups(indexes):
            coder.encode(flat_y[group], table)
        return coder.finish(), self._synthesise(y, width, height)

    @torch.inference_mode()
    def decode(self, payload: bytes, width: int, height: int) -> Planes:
        """The frame back from its payload alone (plus its size, from the stream header)."""
        shape = LatentShape.of(width, height, self.arch.m, self.arch.n)
        coder = Decoder(payload)
        z_count = shape.z[1] * shape.z[2]
        z = np.stack([coder.decode(z_count, table) for table in self.z_tables])
        coder.resolve_escapes()
        z = z.reshape(shape.z)
        y = np.zeros(int(np.prod(shape.y)), dtype=np.int64)
        groups = [(group, coder.decode(group.size, table)) for group, table in self._groups(self._indexes(z))]
        coder.resolve_escapes()
        for group, values in groups:
            y[group] = values
        return self._synthesise(y.reshape(shape.y), width, height)

    def _indexes(self, z: np.ndarray) -> np.ndarray:
        z64 = torch.from_numpy(z.astype(np.float64))[None]
        scales = self.hyper_synthesis(z64)[0].clamp_min(SCALE_BOUND).numpy()
        return scale_indexes(scales).ravel()

    def _groups(self, indexes: np.ndarray) -> list[tuple[np.ndarray, SymbolTable]]:
        """The positions coded with each scale table, in table order then raster order."""
        return [(group, table) for i, table in enumerate(self.y_tables) if (group := np.flatnonzero(indexes == i)).size]

    def _synthesise(self, y: np.ndarray, width: int, height: int) -> Planes:
        latents = torch.from_numpy(y.astype(np.float32))[None].to(self.device)
        x_hat = self.net.g_s(latents).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        y_plane, u, v = unpack_yuv420(x_hat)
        return (
            y_plane[0, :height, :width].cpu().numpy(),
            u[0, : height // 2, : width // 2].cpu().numpy(),
            v[0, : height // 2, : width // 2].cpu().numpy(),
        )


@cache
def _gaussian_tables() -> list[SymbolTable]:
    return gaussian_tables()


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _packed(planes: Planes, device: torch.device) -> torch.Tensor:
    """The frame as the network's (1, 6, H/2, W/2) input, edge-padded to a multiple of ALIGN."""
    height, width = planes[0].shape
    pad_h, pad_w = _ceil_to(height, ALIGN) - height, _ceil_to(width, ALIGN) - width
    tensors = [torch.tensor(p, dtype=torch.float32, device=device)[None, None] / 255.0 for p in planes]
    y_t = F.pad(tensors[0], (0, pad_w, 0, pad_h), mode="replicate")
    u_t, v_t = (F.pad(t, (0, pad_w // 2, 0, pad_h // 2), mode="replicate") for t in tensors[1:])
    return pack_yuv420(y_t[:, 0], u_t[:, 0], v_t[:, 0])

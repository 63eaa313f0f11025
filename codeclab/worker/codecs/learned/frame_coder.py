"""One frame through the scale hyperprior: planes -> range-coded payload -> planes.

The encoder writes the payload only: the reconstruction is what decoding it gives, from the
integer latents alone, so the encoder has no synthesis to run (the worker decodes the
stream anyway). Table indexes come
from the hyper-synthesis run in float64 on the CPU, whatever device the transforms use:
a GPU encode and a CPU decode still agree on every probability table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from codeclab.worker.codecs.learned.entropy import (
    Decoder,
    Encoder,
    SymbolTable,
    gaussian_tables,
    prior_tables,
    scale_indexes,
)
from codeclab.worker.codecs.learned.model import ALIGN, SCALE_BOUND, ScaleHyperprior

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
    def encode(self, planes: Planes) -> bytes:
        """The frame's payload. Its reconstruction is what decode() gives: the encoder does not synthesise one."""
        x = _packed(planes, self.device)
        latents = self.net.g_a(x)
        z = torch.round(self.net.h_a(latents.abs()))[0].cpu().to(torch.int64).numpy()
        y = torch.round(latents)[0].cpu().to(torch.int64).numpy()
        coder = Encoder()
        for channel, table in zip(z, self.z_tables, strict=True):
            coder.encode(channel.ravel(), table)
        coder.flush_escapes()
        flat_y = y.ravel()
        for group, table in self._groups(self._indexes(z)):
            coder.encode(flat_y[group], table)
        return coder.finish()

    @torch.inference_mode()
    def decode(self, payload: bytes, width: int, height: int) -> Planes:
        """The frame back from its payload alone (plus its size, from the stream header)."""
        shape = LatentShape.of(width, height, self.arch.m, self.arch.n)
        coder = Decoder(payload)
        z_count = shape.z[1] * shape.z[2]
        z = np.stack([coder.decode(z_count, table) for table in self.z_tables])
        coder.resolve_escapes()
        z = z.reshape(shape.z)
        groups = self._groups(self._indexes(z))
        values = [coder.decode(group.size, table) for group, table in groups]
        coder.resolve_escapes()
        y = np.empty(int(np.prod(shape.y)), dtype=np.int64)
        if groups:
            y[np.concatenate([group for group, _ in groups])] = np.concatenate(values)
        return self._synthesise(y.reshape(shape.y), width, height)

    def _indexes(self, z: np.ndarray) -> np.ndarray:
        z64 = torch.from_numpy(z.astype(np.float64))[None]
        scales = np.maximum(self.hyper_synthesis(z64)[0].numpy(), SCALE_BOUND)  # clamp_min, one torch op fewer
        return scale_indexes(scales).ravel()

    def _groups(self, indexes: np.ndarray) -> list[tuple[np.ndarray, SymbolTable]]:
        """The positions coded with each scale table, in table order then raster order (one stable sort)."""
        order = np.argsort(indexes.astype(np.uint8), kind="stable")  # 64 tables: a radix sort
        counts = np.bincount(indexes, minlength=len(self.y_tables))
        ends = np.cumsum(counts)
        return [(order[e - c : e], t) for c, e, t in zip(counts, ends, self.y_tables, strict=True) if c]

    def _synthesise(self, y: np.ndarray, width: int, height: int) -> Planes:
        latents = torch.from_numpy(y.astype(np.float32))[None].to(self.device)
        x_hat = self.net.g_s(latents).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)[0].cpu().numpy()
        half_h, half_w = x_hat.shape[1:]  # unpack_yuv420's pixel-shuffle, on the uint8 samples in numpy
        luma = x_hat[:4].reshape(2, 2, half_h, half_w).transpose(2, 0, 3, 1).reshape(2 * half_h, 2 * half_w)
        return (
            np.ascontiguousarray(luma[:height, :width]),
            np.ascontiguousarray(x_hat[4, : height // 2, : width // 2]),
            np.ascontiguousarray(x_hat[5, : height // 2, : width // 2]),
        )


@cache
def _gaussian_tables() -> list[SymbolTable]:
    return gaussian_tables()


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _packed(planes: Planes, device: torch.device) -> torch.Tensor:
    """The frame as the network's (1, 6, H/2, W/2) input, edge-padded to a multiple of ALIGN.

    The samples are padded and folded (pack_yuv420's pixel-unshuffle) as uint8 in numpy, then divided by
    255 in one torch operation: the same floats as dividing each plane first, in fewer passes."""
    height, width = planes[0].shape
    pad_h, pad_w = _ceil_to(height, ALIGN) - height, _ceil_to(width, ALIGN) - width
    y = np.pad(planes[0], ((0, pad_h), (0, pad_w)), mode="edge")
    half_h, half_w = y.shape[0] // 2, y.shape[1] // 2
    folded = y.reshape(half_h, 2, half_w, 2).transpose(1, 3, 0, 2).reshape(4, half_h, half_w)
    chroma = [np.pad(p, ((0, pad_h // 2), (0, pad_w // 2)), mode="edge")[None] for p in planes[1:]]
    packed = torch.from_numpy(np.concatenate([folded, *chroma]))[None].to(device)
    return packed.to(torch.float32).div_(255.0)

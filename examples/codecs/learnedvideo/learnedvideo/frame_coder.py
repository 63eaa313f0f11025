"""Frames through the learned codec: planes -> range-coded payload -> planes, I-frames and P-frames.

An I-frame is the image alone through the scale hyperprior. A P-frame first writes one motion
vector per 16x16 block; the decoder compensates the previous reconstruction with them (integer
arithmetic) and decodes the latents conditioned on that prediction. Both sides keep the same
reference: the encoder runs the decoder's own synthesis on the same integer latents, so the
P-chain never drifts.

Table indexes come from the hyper-synthesis run in float64 on the CPU, whatever device the
transforms use, and depend on the hyper-latents alone: every probability table is fixed before
a single latent is decoded, on any machine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from .entropy import (
    Decoder,
    Encoder,
    SymbolTable,
    gaussian_tables,
    prior_tables,
    scale_indexes,
)
from .model import (
    ALIGN,
    HYPER_STRIDE,
    LATENT_STRIDE,
    LATENTS,
    SCALE_BOUND,
    Hyperprior,
    VideoNet,
    quantise_,
)
from .motion import BLOCK, compensate, estimate, read_vectors, write_vectors

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LatentShape:
    """Where the symbols sit for a frame of a given size (padded up to ALIGN luma samples)."""

    y: tuple[int, int, int]
    z: tuple[int, int, int]
    blocks: tuple[int, int]  # the motion vectors' grid

    @classmethod
    def of(cls, width: int, height: int, hyper: int) -> LatentShape:
        padded_h, padded_w = _ceil_to(height, ALIGN), _ceil_to(width, ALIGN)
        return cls(
            (LATENTS, padded_h // LATENT_STRIDE, padded_w // LATENT_STRIDE),
            (hyper, padded_h // HYPER_STRIDE, padded_w // HYPER_STRIDE),
            (padded_h // BLOCK, padded_w // BLOCK),
        )


class _EntropyModel:
    """One network's hyper-synthesis in float64 on the CPU, its gains, and its tables for z."""

    def __init__(self, hyperprior: Hyperprior) -> None:
        self.hyper_synthesis = copy.deepcopy(hyperprior.h_s).to("cpu", torch.float64)
        self.gains = hyperprior.log_gain.detach().to("cpu", torch.float64).exp().numpy()
        self.z_tables = prior_tables(hyperprior.prior)

    def indexes(self, z: np.ndarray, quality: int) -> np.ndarray:
        z64 = torch.from_numpy(z.astype(np.float64))[None]
        scales = self.hyper_synthesis(z64)[0].numpy() * self.gains[quality][:, None, None]
        return scale_indexes(np.maximum(scales, SCALE_BOUND)).ravel()


class FrameCoder:
    """Codes one frame at a time at a quality (0-based here), given the previous reconstruction for P-frames.

    References and reconstructions are padded planes (a multiple of ALIGN luma samples): the padding is
    reconstructed like the picture, so prediction near the edge has real samples to copy."""

    def __init__(self, net: VideoNet, device: torch.device) -> None:
        self.device = device
        self.net = copy.deepcopy(net).to(device)
        self.arch = net.arch
        self.intra_entropy = _EntropyModel(net.intra.entropy)
        self.inter_entropy = _EntropyModel(net.inter.entropy)
        self.y_tables = _gaussian_tables()

    @torch.inference_mode()
    def encode(self, planes: Planes, quality: int, reference: Planes | None) -> tuple[bytes, Planes]:
        """(the frame's payload, its padded reconstruction: what decode() gives from the payload)."""
        padded = _pad(planes)
        coder = Encoder()
        if reference is None:
            latents = self.net.intra.analyse(_tensor(padded, self.device))
            entropy, hyperprior, prediction = self.intra_entropy, self.net.intra.entropy, None
        else:
            vectors = estimate(padded[0], reference[0])
            write_vectors(coder, vectors)
            prediction = _tensor(compensate(reference, vectors), self.device)
            latents = self.net.inter.analyse(_tensor(padded, self.device), prediction)
            entropy, hyperprior = self.inter_entropy, self.net.inter.entropy
        z = _integers(hyperprior.h_a(latents.abs()))
        y = _integers(latents * hyperprior.gain(self._level(quality)))
        for channel, table in zip(z, entropy.z_tables, strict=True):
            coder.encode(channel.ravel(), table)
        coder.flush_escapes()
        flat_y = y.ravel()
        for group, table in self._groups(entropy.indexes(z, quality)):
            coder.encode(flat_y[group], table)
        return coder.finish(), self._reconstruct(y, quality, prediction)

    @torch.inference_mode()
    def decode(self, payload: bytes, width: int, height: int, quality: int, reference: Planes | None) -> Planes:
        """The frame's padded reconstruction from its payload, its size and quality, and the previous one."""
        shape = LatentShape.of(width, height, self.arch.hyper)
        coder = Decoder(payload)
        prediction = None
        entropy = self.intra_entropy
        if reference is not None:
            vectors = read_vectors(coder, *shape.blocks)
            prediction = _tensor(compensate(reference, vectors), self.device)
            entropy = self.inter_entropy
        z_count = shape.z[1] * shape.z[2]
        z = np.stack([coder.decode(z_count, table) for table in entropy.z_tables])
        coder.resolve_escapes()
        z = z.reshape(shape.z)
        groups = self._groups(entropy.indexes(z, quality))
        values = [coder.decode(group.size, table) for group, table in groups]
        coder.resolve_escapes()
        y = np.empty(int(np.prod(shape.y)), dtype=np.int64)
        if groups:
            y[np.concatenate([group for group, _ in groups])] = np.concatenate(values)
        return self._reconstruct(y.reshape(shape.y), quality, prediction)

    def _groups(self, indexes: np.ndarray) -> list[tuple[np.ndarray, SymbolTable]]:
        """The positions coded with each scale table, in table order then raster order (one stable sort)."""
        order = np.argsort(indexes.astype(np.uint8), kind="stable")  # 64 tables: a radix sort
        counts = np.bincount(indexes, minlength=len(self.y_tables))
        ends = np.cumsum(counts)
        return [(order[e - c : e], t) for c, e, t in zip(counts, ends, self.y_tables, strict=True) if c]

    def _reconstruct(self, y: np.ndarray, quality: int, prediction: torch.Tensor | None) -> Planes:
        """The padded planes the integer latents decode to: the one function encoder and decoder both run."""
        latents = torch.from_numpy(y.astype(np.float32))[None].to(self.device)
        level = self._level(quality)
        if prediction is None:
            x_hat = self.net.intra.synthesise(latents * self.net.intra.entropy.inverse_gain(level))
        else:
            x_hat = self.net.inter.synthesise(latents * self.net.inter.entropy.inverse_gain(level), prediction)
        return _planes(x_hat)

    def _level(self, quality: int) -> torch.Tensor:
        """A 0-based quality as the index tensor the networks' gains take (one image)."""
        return torch.tensor([quality], device=self.device)


class _Chain:
    """Which frames are I-frames (every intra_period-th, from the first) and the reference the next one needs."""

    def __init__(self, coder: FrameCoder, quality: int, intra_period: int) -> None:
        self.coder, self.quality, self.intra_period = coder, quality - 1, intra_period
        self.index = 0
        self.reference: Planes | None = None

    def _next_reference(self) -> Planes | None:
        reference = None if self.index % self.intra_period == 0 else self.reference
        self.index += 1
        return reference


class SequenceEncoder(_Chain):
    """Encodes a clip's frames in order at a quality (1-based, as the stream and the params count)."""

    def encode(self, planes: Planes) -> bytes:
        payload, self.reference = self.coder.encode(planes, self.quality, self._next_reference())
        return payload


class SequenceDecoder(_Chain):
    """Decodes a stream's payloads in order, each to the picture's planes."""

    def __init__(self, coder: FrameCoder, quality: int, intra_period: int, width: int, height: int) -> None:
        super().__init__(coder, quality, intra_period)
        self.width, self.height = width, height

    def decode(self, payload: bytes) -> Planes:
        reference = self._next_reference()
        self.reference = self.coder.decode(payload, self.width, self.height, self.quality, reference)
        return crop(self.reference, self.width, self.height)


def crop(planes: Planes, width: int, height: int) -> Planes:
    """A padded reconstruction cut back to the picture."""
    return (
        np.ascontiguousarray(planes[0][:height, :width]),
        np.ascontiguousarray(planes[1][: height // 2, : width // 2]),
        np.ascontiguousarray(planes[2][: height // 2, : width // 2]),
    )


def _integers(latents: torch.Tensor) -> np.ndarray:
    return torch.round(latents)[0].cpu().to(torch.int64).numpy()


def _planes(x_hat: torch.Tensor) -> Planes:
    """The network's (1, 6, H/2, W/2) output as uint8 planes (unpack_yuv420's pixel-shuffle, in numpy)."""
    samples = quantise_(x_hat)[0].cpu().numpy()
    half_h, half_w = samples.shape[1:]
    luma = samples[:4].reshape(2, 2, half_h, half_w).transpose(2, 0, 3, 1).reshape(2 * half_h, 2 * half_w)
    return np.ascontiguousarray(luma), np.ascontiguousarray(samples[4]), np.ascontiguousarray(samples[5])


@cache
def _gaussian_tables() -> list[SymbolTable]:
    return gaussian_tables()


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad(planes: Planes) -> Planes:
    """The frame edge-padded to a multiple of ALIGN luma samples."""
    height, width = planes[0].shape
    pad_h, pad_w = _ceil_to(height, ALIGN) - height, _ceil_to(width, ALIGN) - width
    if not pad_h and not pad_w:
        return planes
    luma = np.pad(planes[0], ((0, pad_h), (0, pad_w)), mode="edge")
    u, v = (np.pad(p, ((0, pad_h // 2), (0, pad_w // 2)), mode="edge") for p in planes[1:])
    return luma, u, v


def _tensor(planes: Planes, device: torch.device) -> torch.Tensor:
    """Padded planes as the network's (1, 6, H/2, W/2) input: pack_yuv420's pixel-unshuffle done on the
    uint8 samples in numpy, then one division by 255 (the same floats as dividing each plane first)."""
    y = planes[0]
    half_h, half_w = y.shape[0] // 2, y.shape[1] // 2
    folded = y.reshape(half_h, 2, half_w, 2).transpose(1, 3, 0, 2).reshape(4, half_h, half_w)
    packed = torch.from_numpy(np.concatenate([folded, planes[1][None], planes[2][None]]))[None].to(device)
    return packed.to(torch.float32).div_(255.0)

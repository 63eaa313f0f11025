"""Entropy coding of the quantised latents with constriction's range coder, bit-exact by construction.

Every probability model is an integer table, fixed before coding:
- the latents y use a zero-mean Gaussian per symbol whose scale is snapped to a fixed table
  of 64 scales (0.11 to 256, log-spaced, as in the literature), so the decoder only has to
  agree on a table index, never on a float;
- the hyper-latents z use one table per channel, taken from the learned factorized prior.
Tables are computed in float64 and rounded to 24-bit counts, so last-bit float differences
between machines cannot change them. Values outside a table's support are coded as an
escape symbol followed by an Exp-Golomb code, so any integer round-trips.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property

import constriction
import numpy as np
import torch
from scipy.special import ndtr, ndtri

from .model import SCALE_BOUND, FactorizedPrior

PRECISION = 24  # bits of each table's fixed-point probabilities: constriction's Categorical precision
TAIL_MASS = 1e-9  # probability left to the escape symbol, per table
SCALE_TABLE = np.exp(np.linspace(np.log(SCALE_BOUND), np.log(256.0), 64))
Z_RANGE = 64  # the hyper-latent tables cover [-64, 64] before trimming
_EXP_GOLOMB_BITS = 32
_CHUNK_BITS = 16
Categorical = constriction.stream.model.Categorical


@dataclass(frozen=True)
class SymbolTable:
    """A categorical over the integers offset .. offset+size-1, plus an escape category `size`."""

    offset: int
    counts: np.ndarray = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.counts) - 1

    @cached_property
    def model(self) -> constriction.stream.model.Categorical:
        """Built once per table: every frame codes with the same fixed tables."""
        return Categorical(self.counts, perfect=False)


def quantised_table(offset: int, pmf: np.ndarray) -> SymbolTable:
    """Round a pmf over offset.. to integer counts summing to 2^PRECISION, every symbol possible."""
    probabilities = np.append(pmf, max(TAIL_MASS, 1.0 - pmf.sum()))
    counts = np.maximum(1, np.round(probabilities * 2**PRECISION)).astype(np.int64)
    counts[np.argmax(counts)] += 2**PRECISION - counts.sum()
    return SymbolTable(offset, counts.astype(np.float64))


def gaussian_tables() -> list[SymbolTable]:
    """One table per entry of SCALE_TABLE, covering all but TAIL_MASS of its Gaussian."""
    tables = []
    for scale in SCALE_TABLE:
        half_width = int(np.ceil(scale * ndtri(1 - TAIL_MASS / 2)))
        values = np.arange(-half_width, half_width + 1, dtype=np.float64)
        pmf = ndtr((values + 0.5) / scale) - ndtr((values - 0.5) / scale)
        tables.append(quantised_table(-half_width, pmf))
    return tables


def prior_tables(prior: FactorizedPrior) -> list[SymbolTable]:
    """One table per hyper-latent channel, from the learned density evaluated in float64."""
    prior64 = _float64_copy(prior)
    values = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float64)
    channels = prior64.matrices[0].shape[0]
    grid = values.expand(channels, 1, -1)
    with torch.no_grad():
        lower = prior64.cumulative_logits(grid - 0.5)
        upper = prior64.cumulative_logits(grid + 0.5)
    sign = -torch.sign(lower + upper)
    pmf = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))[:, 0].numpy()
    return [_trimmed(row) for row in pmf]


def _trimmed(pmf: np.ndarray) -> SymbolTable:
    """Drop the ends of a [-Z_RANGE, Z_RANGE] pmf that hold less than TAIL_MASS between them."""
    cumulative = np.cumsum(pmf)
    first = int(np.searchsorted(cumulative, TAIL_MASS / 2))
    last = int(np.searchsorted(cumulative, cumulative[-1] - TAIL_MASS / 2))
    last = max(first, min(last, len(pmf) - 1))
    return quantised_table(first - Z_RANGE, pmf[first : last + 1])


def _float64_copy(module: FactorizedPrior) -> FactorizedPrior:
    return copy.deepcopy(module).to("cpu", torch.float64)


def scale_indexes(scales: np.ndarray) -> np.ndarray:
    """The table entry for each predicted scale: the smallest table scale not below it."""
    return np.minimum(np.searchsorted(SCALE_TABLE, scales, side="left"), len(SCALE_TABLE) - 1)


class Encoder:
    """Appends symbols group by group; escaped values follow at the next flush_escapes()."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()
        self._escaped: list[int] = []

    def encode(self, values: np.ndarray, table: SymbolTable) -> None:
        categories = values.astype(np.int64) - table.offset
        outside = (categories < 0) | (categories >= table.size)
        self._escaped.extend(int(v) for v in values[outside])
        categories[outside] = table.size
        self._coder.encode(categories.astype(np.int32), table.model)

    def flush_escapes(self) -> None:
        """Code the escaped values so far: a section must be whole before the next depends on it."""
        for value in self._escaped:
            _encode_exp_golomb(self._coder, value)
        self._escaped.clear()

    def finish(self) -> bytes:
        self.flush_escapes()
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Mirrors Encoder: decode groups, then fill their escaped positions at resolve_escapes()."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ValueError("a range-coded payload is whole 32-bit words")
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def decode(self, count: int, table: SymbolTable) -> np.ndarray:
        """Values for `count` symbols; escaped ones are filled in, in place, by resolve_escapes()."""
        categories = self._coder.decode(table.model, count).astype(np.int64)
        values = categories + table.offset
        self._pending.append((values, np.flatnonzero(categories == table.size)))
        return values

    def resolve_escapes(self) -> None:
        for values, positions in self._pending:
            for position in positions:
                values[position] = _decode_exp_golomb(self._coder)
        self._pending.clear()


def _encode_exp_golomb(coder: constriction.stream.queue.RangeEncoder, value: int) -> None:
    """Zig-zag, then Exp-Golomb: the bit length in 5 bits, then the remainder in 16-bit chunks."""
    folded = (2 * value if value >= 0 else -2 * value - 1) + 1
    bits = folded.bit_length() - 1
    if bits >= _EXP_GOLOMB_BITS:
        raise ValueError(f"latent value {value} is beyond the escape code's range")
    coder.encode(bits, constriction.stream.model.Uniform(_EXP_GOLOMB_BITS))
    remainder = folded - (1 << bits)
    for shift in range(0, bits, _CHUNK_BITS):
        width = min(_CHUNK_BITS, bits - shift)
        coder.encode((remainder >> shift) & ((1 << width) - 1), constriction.stream.model.Uniform(1 << width))


def _decode_exp_golomb(coder: constriction.stream.queue.RangeDecoder) -> int:
    bits = int(coder.decode(constriction.stream.model.Uniform(_EXP_GOLOMB_BITS)))
    remainder = 0
    for shift in range(0, bits, _CHUNK_BITS):
        width = min(_CHUNK_BITS, bits - shift)
        remainder |= int(coder.decode(constriction.stream.model.Uniform(1 << width))) << shift
    folded = (1 << bits) + remainder - 1
    return folded // 2 if folded % 2 == 0 else -(folded + 1) // 2

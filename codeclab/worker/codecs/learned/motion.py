"""Block motion for the learned codec's P-frames: find it, apply it exactly, and write it.

One vector per 16x16 luma block (2x2 latent positions), in half-pel luma units, which are
quarter-pel chroma units. Compensation is integer bilinear interpolation (H.264's chroma
filter), so encoder and decoder predict the same bytes on any machine: no float touches
the prediction. The search is the encoder's alone and runs on the luma plane: a full search
at a quarter of the size, refined at half and full size, then to half-pel. Everything is
numpy, so the exported package needs nothing the sandbox does not already allow.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from codeclab.worker.codecs.learned.entropy import Decoder, Encoder, SymbolTable, quantised_table

BLOCK = 16  # luma samples per block side
SEARCH = 16  # full-pel luma samples each way; vectors are within +-2*SEARCH half-pel units
LIMIT = 2 * SEARCH
# A vector's half-pel cost in SAD units, so that a flat area keeps the vector its neighbours agree on.
VECTOR_PENALTY = 2
# Two-sided geometric tables p(k) ~ r^|k| for the vector differences; the encoder picks one per component.
# Literal ratios and products only, so every machine builds the same tables.
VECTOR_RATIOS = (0.05, 0.2, 0.4, 0.6, 0.75, 0.85, 0.92, 0.97)

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


# The 3x3 steps of a refinement, in raster order: index 3 * (dy + 1) + (dx + 1).
STEP = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
# The same steps nearest first (stable, so raster order among equals): the full-pel levels' order of preference.
NEAREST_FIRST = STEP[np.argsort(np.abs(STEP).sum(axis=1), kind="stable")]


def compensate(reference: Planes, vectors: np.ndarray) -> Planes:
    """The prediction of a frame from the reference's planes and one (dy, dx) vector per block."""
    luma = _sample(reference[0], vectors, BLOCK, frac_bits=1)
    chroma = tuple(_sample(plane, vectors, BLOCK // 2, frac_bits=2) for plane in reference[1:])
    return luma, chroma[0], chroma[1]


def _sample(plane: np.ndarray, vectors: np.ndarray, block: int, frac_bits: int) -> np.ndarray:
    """Each block moved by its vector, in 1/2**frac_bits sample units, with integer bilinear weights.

    16 bits hold every sum (at most 2**(2 * frac_bits) * 255)."""
    rows, cols = vectors.shape[:2]
    scale = 1 << frac_bits
    pad = LIMIT // scale + 1
    padded = np.pad(plane, pad, mode="edge").astype(np.int16)
    top, left = _corners(rows, cols, block, pad)
    vy, vx = vectors[..., 0], vectors[..., 1]
    # each block with one more row and column, for the bilinear taps below and to the right
    window = _tiles_at(padded, top + (vy >> frac_bits), left + (vx >> frac_bits), block + 1)
    fy, fx = (vy & (scale - 1)).astype(np.int16), (vx & (scale - 1)).astype(np.int16)
    total = (scale - fy) * (scale - fx) * window[:-1, :-1]
    total += (scale - fy) * fx * window[:-1, 1:]
    total += fy * (scale - fx) * window[1:, :-1]
    total += fy * fx * window[1:, 1:]
    total += (scale * scale) // 2
    total >>= 2 * frac_bits
    return total.transpose(2, 0, 3, 1).reshape(rows * block, cols * block).astype(np.uint8)


def estimate(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Vectors (rows, cols, 2) for the luma plane `current` predicted from `reference` (both uint8, the
    same size, a multiple of BLOCK): coarse-to-fine block matching on sums of absolute differences."""
    # samples and their 2x2 means fit 16 bits, half the memory traffic of 32
    cur = [current.astype(np.int16)]
    ref = [reference.astype(np.int16)]
    for _ in range(2):
        cur.append(_halve(cur[-1]))
        ref.append(_halve(ref[-1]))
    full_pel = _full_search(cur[2], ref[2], level=2)
    # the current blocks as tiles, made once per level: level 0's serve its refinement and the half-pel step
    blocks = {level: _tiles(cur[level], BLOCK >> level) for level in (1, 0)}
    for level in (1, 0):
        full_pel = _refine(blocks[level], ref[level], level, 2 * full_pel)
    return _refine_to_half_pel(blocks[0], ref[0], full_pel)


def _halve(plane: np.ndarray) -> np.ndarray:
    """Each 2x2 square's rounded mean, in the plane's dtype: strided adds, where a reshaped sum over two axes
    took 30 times as long (1 ms a 448x256 plane)."""
    rows = plane[0::2] + plane[1::2]
    means = rows[:, 0::2] + rows[:, 1::2]
    means += 2
    means >>= 2
    return means


def _full_search(cur: np.ndarray, ref: np.ndarray, level: int) -> np.ndarray:
    """Every block's best vector within the level's whole range (full-pel at this pyramid level), nearest
    first among equal costs. The range is the same for every block, so each candidate is the whole plane
    shifted: no gather, and the SADs are block sums of one difference array."""
    block, limit = BLOCK >> level, SEARCH >> level
    span = np.arange(-limit, limit + 1)
    deltas = np.stack(np.meshgrid(span, span, indexing="ij"), axis=-1).reshape(-1, 2)
    ordered = deltas[np.argsort(np.abs(deltas).sum(axis=1), kind="stable")]
    height, width = cur.shape
    padded = np.pad(ref, limit, mode="edge")
    shifted = sliding_window_view(padded, (height, width))[ordered[:, 0] + limit, ordered[:, 1] + limit]
    difference = np.abs(np.subtract(cur[None], shifted, out=shifted), out=shifted)
    cost = _block_sums(difference, block) << (2 * level)
    cost += (VECTOR_PENALTY * (np.abs(ordered).sum(axis=1) << (level + 1)))[:, None, None]
    return ordered[np.argmin(cost, axis=0)]


def _refine(blocks: np.ndarray, ref: np.ndarray, level: int, centres: np.ndarray) -> np.ndarray:
    """Each block's best of the 3x3 full-pel steps around its centre (at this pyramid level), nearest first;
    `blocks`: the current plane's blocks at this level, as tiles."""
    block, limit = BLOCK >> level, SEARCH >> level
    around = _neighbourhoods(ref, centres, block, pad=limit + 1)
    steps = [around[dy : dy + block, dx : dx + block] for dy, dx in STEP + 1]
    return _cheapest_step(_step_sads(blocks, steps), centres, NEAREST_FIRST, limit, level, half_pel_bits=level + 1)


def _refine_to_half_pel(blocks: np.ndarray, ref: np.ndarray, full_pel: np.ndarray) -> np.ndarray:
    """Each block's best of the 3x3 half-pel steps around its full-pel vector, in raster order, each step
    interpolated as _sample does: half a sample is the rounded mean of two neighbours, diagonally of four."""
    around = _neighbourhoods(ref, full_pel, BLOCK, pad=SEARCH + 1)
    phases = {
        (0, 0): around,
        (0, 1): (around[:, :-1] + around[:, 1:] + 1) >> 1,
        (1, 0): (around[:-1] + around[1:] + 1) >> 1,
        (1, 1): (around[:-1, :-1] + around[:-1, 1:] + around[1:, :-1] + around[1:, 1:] + 2) >> 2,
    }
    steps = []
    for dy, dx in STEP:
        # a step of -1 lies between the samples at -1 and 0 (tile offset 0), of +1 between 0 and 1 (offset 1)
        y, x = min(dy + 1, 1), min(dx + 1, 1)
        steps.append(phases[(dy & 1, dx & 1)][y : y + BLOCK, x : x + BLOCK])
    return _cheapest_step(_step_sads(blocks, steps), 2 * full_pel, STEP, LIMIT, level=0, half_pel_bits=0)


def _neighbourhoods(ref: np.ndarray, vectors: np.ndarray, block: int, pad: int) -> np.ndarray:
    """Tiles (block + 2, block + 2, rows, cols): each block moved by its full-pel vector, with one more sample
    on every side, from `ref` edge-padded by `pad` (which must exceed the largest vector)."""
    rows, cols = vectors.shape[:2]
    top, left = _corners(rows, cols, block, pad)
    padded = np.pad(ref, pad, mode="edge")
    return _tiles_at(padded, top + vectors[..., 0] - 1, left + vectors[..., 1] - 1, block + 2)


def _step_sads(blocks: np.ndarray, steps: list[np.ndarray]) -> np.ndarray:
    """Sums of absolute differences (9, rows, cols) between the current blocks and each step's moved blocks,
    all tiles (block, block, rows, cols). Differences of 8-bit samples are at most 255, so a block's sum fits
    16 unsigned bits (256 * 255 < 65536)."""
    block = blocks.shape[0]
    difference = np.empty((len(steps), *blocks.shape), np.int16)
    for k, moved in enumerate(steps):
        np.subtract(blocks, moved, out=difference[k])
    np.abs(difference, out=difference)
    magnitudes = difference.view(np.uint16).reshape(len(steps), block * block, *blocks.shape[2:])
    return magnitudes.sum(axis=1, dtype=np.uint16).astype(np.int32)


def _cheapest_step(
    sads: np.ndarray, centres: np.ndarray, order: np.ndarray, limit: int, level: int, half_pel_bits: int
) -> np.ndarray:
    """Of the steps around each centre, in `order`, the vector of least cost: its SAD scaled from the pyramid
    `level` to full size plus its penalty in full-size half-pel units (a vector unit is 2**half_pel_bits of
    them). A step beyond the range is clipped into it, costs what the vector it becomes costs (`sads` holds
    every step's), and keeps its own place in the order."""
    candidates = np.clip(centres[None] + order[:, None, None, :], -limit, limit)
    offset = candidates - centres[None] + 1
    sad = np.take_along_axis(sads, 3 * offset[..., 0] + offset[..., 1], axis=0)
    cost = (sad << (2 * level)) + VECTOR_PENALTY * (np.abs(candidates).sum(axis=3) << half_pel_bits)
    return np.take_along_axis(candidates, np.argmin(cost, axis=0)[None, :, :, None], axis=0)[0]


def _block_sums(samples: np.ndarray, block: int) -> np.ndarray:
    """(n, h, w) -> (n, h / block, w / block): each block's sum in 32 bits, by strided adds."""
    rows = samples[:, 0::block].astype(np.int32)
    for i in range(1, block):
        rows += samples[:, i::block]
    sums = rows[:, :, 0::block].copy()
    for i in range(1, block):
        sums += rows[:, :, i::block]
    return sums


def _corners(rows: int, cols: int, block: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Each block's top row (rows, 1) and left column (1, cols) in a plane padded by `pad`."""
    return (np.arange(rows) * block + pad)[:, None], (np.arange(cols) * block + pad)[None, :]


def _tiles_at(plane: np.ndarray, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
    """The size x size window of `plane` at each block's (top, left), as tiles (size, size, rows, cols).

    Blocks last: every operation on a tile then runs over all blocks at once (448 samples in a row at
    448x256), where with the window last it ran over 16 at a time, three to five times as slow."""
    windows = sliding_window_view(plane, (size, size))[top, left]
    return np.ascontiguousarray(windows.transpose(2, 3, 0, 1))


def _tiles(plane: np.ndarray, block: int) -> np.ndarray:
    """A plane's blocks as tiles (block, block, rows, cols)."""
    h, w = plane.shape
    return np.ascontiguousarray(plane.reshape(h // block, block, w // block, block).transpose(1, 3, 0, 2))


# --- writing the vectors: differences from the left neighbour (the first column: from above) ---


def _differences(vectors: np.ndarray) -> np.ndarray:
    diff = vectors.copy()
    diff[:, 1:] -= vectors[:, :-1]
    diff[1:, 0] -= vectors[:-1, 0]
    return diff


def _undifference(diff: np.ndarray) -> np.ndarray:
    vectors = diff.copy()
    vectors[:, 0] = np.cumsum(diff[:, 0], axis=0)
    return np.cumsum(vectors, axis=1)


def _vector_tables() -> list[SymbolTable]:
    span = 4 * LIMIT  # differences of two vectors in [-LIMIT, LIMIT]
    tables = []
    for ratio in VECTOR_RATIOS:
        weights = np.ones(span + 1)
        for k in range(1, span + 1):
            weights[k] = weights[k - 1] * ratio
        pmf = np.concatenate([weights[:0:-1], weights])
        tables.append(quantised_table(-span, pmf / pmf.sum()))
    return tables


_TABLES = _vector_tables()


def write_vectors(coder: Encoder, vectors: np.ndarray) -> None:
    """Each component's differences, with the table that codes them in the fewest bits (its index first; the
    index after the last table says every difference is zero, and nothing follows)."""
    diff = _differences(vectors)
    for component in (0, 1):
        values = diff[..., component].ravel()
        if not values.any():
            coder.encode(np.array([_ALL_ZERO]), _INDEX_TABLE)
            continue
        choice = int(np.argmin([_bits(values, table) for table in _TABLES]))
        coder.encode(np.array([choice]), _INDEX_TABLE)
        coder.encode(values, _TABLES[choice])
    coder.flush_escapes()


def read_vectors(coder: Decoder, rows: int, cols: int) -> np.ndarray:
    """The vectors write_vectors wrote; ValueError when they leave the search range (a damaged stream)."""
    components = []
    for _ in (0, 1):
        choice = int(coder.decode(1, _INDEX_TABLE)[0])
        if choice == _ALL_ZERO:
            components.append(np.zeros(rows * cols, dtype=np.int64))
        elif choice < len(_TABLES):
            components.append(coder.decode(rows * cols, _TABLES[choice]))
        else:
            raise ValueError("a motion table index is out of range")
    coder.resolve_escapes()
    vectors = _undifference(np.stack(components, axis=-1).reshape(rows, cols, 2))
    if np.abs(vectors).max(initial=0) > LIMIT:
        raise ValueError("a motion vector is beyond the search range")
    return vectors


def _bits(values: np.ndarray, table: SymbolTable) -> float:
    counts = table.counts
    categories = np.clip(values - table.offset, 0, table.size)
    return float(-np.log2(counts[categories] / counts.sum()).sum())


_ALL_ZERO = len(VECTOR_RATIOS)
_INDEX_TABLE = quantised_table(0, np.full(_ALL_ZERO + 1, 1 / (_ALL_ZERO + 1)))

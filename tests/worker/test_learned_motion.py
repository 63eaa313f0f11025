"""The learned codec's block motion: exact compensation, a search that finds real motion, and the vectors' coding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from codeclab.worker.codecs.learned import motion
from codeclab.worker.codecs.learned.entropy import Decoder, Encoder


def _reference_sample(plane: np.ndarray, y: int, x: int, frac_bits: int) -> int:
    """One sample at (y, x) in 1/2**frac_bits units, written plainly: clamped coordinates, bilinear weights."""
    scale = 1 << frac_bits
    iy, fy, ix, fx = y >> frac_bits, y & (scale - 1), x >> frac_bits, x & (scale - 1)
    h, w = plane.shape

    def at(r: int, c: int) -> int:
        return int(plane[min(max(r, 0), h - 1), min(max(c, 0), w - 1)])

    total = (
        (scale - fy) * (scale - fx) * at(iy, ix) + (scale - fy) * fx * at(iy, ix + 1)
        + fy * (scale - fx) * at(iy + 1, ix) + fy * fx * at(iy + 1, ix + 1)
    )  # fmt: skip
    return (total + scale * scale // 2) >> (2 * frac_bits)


def _reference_compensate(reference: motion.Planes, vectors: np.ndarray) -> motion.Planes:
    out = []
    for plane, block, frac_bits in ((reference[0], 16, 1), (reference[1], 8, 2), (reference[2], 8, 2)):
        predicted = np.empty_like(plane)
        for r in range(plane.shape[0]):
            for c in range(plane.shape[1]):
                vy, vx = vectors[r // block, c // block]
                predicted[r, c] = _reference_sample(plane, (r << frac_bits) + vy, (c << frac_bits) + vx, frac_bits)
        out.append(predicted)
    return out[0], out[1], out[2]


def _frame(rng: np.random.Generator, height: int, width: int) -> motion.Planes:
    return (
        rng.integers(0, 256, (height, width), dtype=np.uint8),
        rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8),
        rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8),
    )


def test_compensation_matches_a_plain_per_sample_implementation_for_every_kind_of_vector() -> None:
    rng = np.random.default_rng(7)
    reference = _frame(rng, 64, 96)
    vectors = rng.integers(-motion.LIMIT, motion.LIMIT + 1, (4, 6, 2))
    vectors[0, 0], vectors[0, 1], vectors[0, 2] = (0, 0), (motion.LIMIT, -motion.LIMIT), (1, -1)  # none, edge, half
    got = motion.compensate(reference, vectors)
    want = _reference_compensate(reference, vectors)
    for plane_got, plane_want in zip(got, want, strict=True):
        assert plane_got.dtype == np.uint8 and np.array_equal(plane_got, plane_want)


def test_the_search_finds_a_known_whole_and_half_sample_shift() -> None:
    rng = np.random.default_rng(3)
    smooth = np.kron(rng.integers(0, 256, (20, 28)), np.ones((8, 8))).astype(np.uint8)[:128, :192]
    current = smooth[16:112, 16:176]
    reference = smooth[13:109, 21:181]  # the picture moved by (+3, -5) samples: the vector points back
    vectors = motion.estimate(np.ascontiguousarray(current), np.ascontiguousarray(reference))
    inner = vectors[1:-1, 1:-1].reshape(-1, 2)
    assert (inner == (6, -10)).all(axis=1).mean() > 0.9, inner
    # half-sample motion: a smooth picture sampled at twice the density, moved by one fine sample
    fine = ndimage.gaussian_filter(rng.normal(128, 60, (192, 320)), 3).clip(0, 255)
    current, reference = fine[::2, 1::2][:96, :144], fine[::2, 0::2][:96, :144]
    half = motion.estimate(*(np.ascontiguousarray(p.round().astype(np.uint8)) for p in (current, reference)))
    assert (half[1:-1, 1:-1].reshape(-1, 2) == (0, 1)).all(axis=1).mean() > 0.9, half


def _reference_estimate(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The search as docs/learned-codec.md states it, one block and one candidate at a time: a full search at a
    quarter of the size, 3x3 refinements at half and full size (nearest step first), then the 3x3 half-pel
    steps (raster order); candidates clipped to the range; cost = SAD scaled to full size + penalty * |v| in
    half-pel units; the first candidate of least cost wins."""

    def halve(plane: np.ndarray) -> np.ndarray:
        h, w = plane.shape
        return (plane.reshape(h // 2, 2, w // 2, 2).astype(np.int64).sum(axis=(1, 3)) + 2) >> 2

    def window(plane: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
        rows = np.clip(np.arange(top, top + size), 0, plane.shape[0] - 1)
        cols = np.clip(np.arange(left, left + size), 0, plane.shape[1] - 1)
        return plane[np.ix_(rows, cols)].astype(np.int64)

    def half_pel_block(plane: np.ndarray, top: int, left: int, vy: int, vx: int) -> np.ndarray:
        """The block moved by (vy, vx) half-pel units, sample by sample as compensation's reference computes it."""
        return np.array(
            [
                [
                    _reference_sample(plane, ((top + i) << 1) + vy, ((left + j) << 1) + vx, 1)
                    for j in range(motion.BLOCK)
                ]
                for i in range(motion.BLOCK)
            ]
        )

    def first_cheapest(costs: list[tuple[int, tuple[int, int]]]) -> tuple[int, int]:
        best = costs[0]
        for cost, vector in costs[1:]:
            if cost < best[0]:
                best = (cost, vector)
        return best[1]

    nearest_first = [(0, 0), (-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    raster = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    cur, ref = [current.astype(np.int64)], [reference.astype(np.int64)]
    for _ in range(2):
        cur.append(halve(cur[-1]))
        ref.append(halve(ref[-1]))
    r = motion.SEARCH // 4
    coarse = sorted(
        [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)], key=lambda d: abs(d[0]) + abs(d[1])
    )
    vectors = np.zeros((current.shape[0] // motion.BLOCK, current.shape[1] // motion.BLOCK, 2), dtype=np.int64)
    for row, col in np.ndindex(vectors.shape[:2]):
        vector = (0, 0)
        for level, steps in ((2, coarse), (1, nearest_first), (0, nearest_first)):
            block, limit = motion.BLOCK >> level, motion.SEARCH >> level
            top, left = row * block, col * block
            here = cur[level][top : top + block, left : left + block]
            centre = (0, 0) if level == 2 else (2 * vector[0], 2 * vector[1])
            costs = []
            for dy, dx in steps:
                vy, vx = (int(np.clip(c + d, -limit, limit)) for c, d in zip(centre, (dy, dx), strict=True))
                sad = int(np.abs(here - window(ref[level], top + vy, left + vx, block)).sum())
                costs.append(
                    ((sad << (2 * level)) + motion.VECTOR_PENALTY * ((abs(vy) + abs(vx)) << (level + 1)), (vy, vx))
                )
            vector = first_cheapest(costs)
        top, left = row * motion.BLOCK, col * motion.BLOCK
        here = cur[0][top : top + motion.BLOCK, left : left + motion.BLOCK]
        costs = []
        for dy, dx in raster:
            vy, vx = (
                int(np.clip(2 * v + d, -motion.LIMIT, motion.LIMIT)) for v, d in zip(vector, (dy, dx), strict=True)
            )
            sad = int(np.abs(here - half_pel_block(ref[0], top, left, vy, vx)).sum())
            costs.append((sad + motion.VECTOR_PENALTY * (abs(vy) + abs(vx)), (vy, vx)))
        vectors[row, col] = first_cheapest(costs)
    return vectors


def test_the_search_is_the_documented_search_written_plainly() -> None:
    """Noise, a flat frame, noise of two levels (costs tie: the order among equals decides), and a picture
    moved past the range (vectors clipped at +-LIMIT): the vectorised search picks the plain loop's vector."""
    rng = np.random.default_rng(11)
    smooth = ndimage.gaussian_filter(rng.normal(128, 60, (160, 224)), 2).clip(0, 255).round().astype(np.uint8)
    pairs = [
        (rng.integers(0, 256, (64, 96), dtype=np.uint8), rng.integers(0, 256, (64, 96), dtype=np.uint8)),
        (np.full((64, 96), 90, np.uint8), np.full((64, 96), 90, np.uint8)),
        # samples of 0 and 1: many candidates cost the same, so the order among equals decides
        (rng.integers(0, 2, (64, 96), dtype=np.uint8), rng.integers(0, 2, (64, 96), dtype=np.uint8)),
        (smooth[40:104, 40:136], smooth[40:104, 40:136]),
        (smooth[40:104, 40:136], smooth[3:67, 77:173]),  # moved 37 down and 37 left: beyond the range
        (smooth[40:104, 40:136], smooth[60:124, 20:116]),
    ]
    for current, reference in pairs:
        current, reference = np.ascontiguousarray(current), np.ascontiguousarray(reference)
        assert np.array_equal(motion.estimate(current, reference), _reference_estimate(current, reference))
    clipped = motion.estimate(*(np.ascontiguousarray(p) for p in pairs[4]))
    assert (np.abs(clipped) == motion.LIMIT).any()  # the clipping was exercised


def test_vectors_round_trip_and_a_vector_beyond_the_range_is_refused() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.integers(-motion.LIMIT, motion.LIMIT + 1, (9, 11, 2))
    vectors[:4] = 0  # a still area: the table with the steepest ratio
    encoder = Encoder()
    motion.write_vectors(encoder, vectors)
    assert np.array_equal(motion.read_vectors(Decoder(encoder.finish()), 9, 11), vectors)
    outside = np.zeros((2, 2, 2), dtype=np.int64)
    outside[1, 1] = (motion.LIMIT + 1, 0)
    encoder = Encoder()
    motion.write_vectors(encoder, outside)
    with pytest.raises(ValueError, match="beyond the search range"):
        motion.read_vectors(Decoder(encoder.finish()), 2, 2)


def test_still_vectors_cost_a_few_bytes() -> None:
    encoder = Encoder()
    motion.write_vectors(encoder, np.zeros((16, 28, 2), dtype=np.int64))
    assert len(encoder.finish()) <= 8

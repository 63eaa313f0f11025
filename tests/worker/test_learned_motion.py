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

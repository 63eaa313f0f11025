"""The compiled SSIM kernel: one pass over two float32 planes gives the sums of contrast-structure and of SSIM.

Each input row is filtered across once, into a ring of the last 11 rows (E[x], E[y], E[x^2 + y^2] and
E[xy] across); each output row is then filtered down the ring, and its SSIM terms are summed as they are
made. Nothing plane-sized is written, and the ring (11 x 4 rows) stays in a core's L2 cache. The window
is symmetric, so each pair of taps at the same distance from the centre is added before it is multiplied.

One division per pixel: contrast-structure N/D and SSIM N*L/(D*M) share 1/(D*M).

Compiled by numba on first use and cached on disk (beside this file, or under NUMBA_CACHE_DIR where that
is not writable), so only the first process on a machine pays the compile.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Only FMA contraction and reassociation of the row sums: results stay deterministic on one machine
# and within float32 rounding of the plain loop everywhere.
_FAST = {"contract", "reassoc", "nsz"}
_SIGNATURE = (
    "UniTuple(float64, 2)(float32[:, ::1], float32[:, ::1], float32[::1], float32, float32, float32[:, :, ::1])"
)


@njit(inline="always", fastmath=_FAST, error_model="numpy", boundscheck=False)
def _down(rows: tuple[np.ndarray, ...], q: int, c: int, g: tuple[np.float32, ...]) -> np.float32:
    """Quantity q at column c, filtered down the 11 ring rows."""
    return (
        g[0] * (rows[0][q, c] + rows[10][q, c])
        + g[1] * (rows[1][q, c] + rows[9][q, c])
        + g[2] * (rows[2][q, c] + rows[8][q, c])
        + g[3] * (rows[3][q, c] + rows[7][q, c])
        + g[4] * (rows[4][q, c] + rows[6][q, c])
        + g[5] * rows[5][q, c]
    )  # pragma: no cover - compiled


@njit(_SIGNATURE, cache=True, nogil=True, fastmath=_FAST, error_model="numpy", boundscheck=False)
def ssim_sums(
    x: np.ndarray, y: np.ndarray, taps: np.ndarray, c1: np.float32, c2: np.float32, ring: np.ndarray
) -> tuple[float, float]:  # pragma: no cover - compiled; the tests call it through SsimWorkspace
    """Sums over the valid region of contrast-structure and of SSIM. taps: the 11 window taps (symmetric);
    ring: (11, 4, at least width - 10) float32 scratch."""
    height, width = x.shape
    out_width = width - 10
    g0, g1, g2, g3, g4, g5 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5]
    two, one = np.float32(2.0), np.float32(1.0)
    cs_total, ssim_total = 0.0, 0.0
    for r in range(height):
        slot, xr, yr = ring[r % 11], x[r], y[r]
        hx, hy, hs, hp = slot[0], slot[1], slot[2], slot[3]
        for c in range(out_width):
            a0, a1, a2, a3, a4, a5 = xr[c], xr[c + 1], xr[c + 2], xr[c + 3], xr[c + 4], xr[c + 5]
            a6, a7, a8, a9, a10 = xr[c + 6], xr[c + 7], xr[c + 8], xr[c + 9], xr[c + 10]
            b0, b1, b2, b3, b4, b5 = yr[c], yr[c + 1], yr[c + 2], yr[c + 3], yr[c + 4], yr[c + 5]
            b6, b7, b8, b9, b10 = yr[c + 6], yr[c + 7], yr[c + 8], yr[c + 9], yr[c + 10]
            hx[c] = g0 * (a0 + a10) + g1 * (a1 + a9) + g2 * (a2 + a8) + g3 * (a3 + a7) + g4 * (a4 + a6) + g5 * a5
            hy[c] = g0 * (b0 + b10) + g1 * (b1 + b9) + g2 * (b2 + b8) + g3 * (b3 + b7) + g4 * (b4 + b6) + g5 * b5
            hs[c] = (
                g0 * (a0 * a0 + a10 * a10 + b0 * b0 + b10 * b10)
                + g1 * (a1 * a1 + a9 * a9 + b1 * b1 + b9 * b9)
                + g2 * (a2 * a2 + a8 * a8 + b2 * b2 + b8 * b8)
                + g3 * (a3 * a3 + a7 * a7 + b3 * b3 + b7 * b7)
                + g4 * (a4 * a4 + a6 * a6 + b4 * b4 + b6 * b6)
                + g5 * (a5 * a5 + b5 * b5)
            )
            hp[c] = (
                g0 * (a0 * b0 + a10 * b10)
                + g1 * (a1 * b1 + a9 * b9)
                + g2 * (a2 * b2 + a8 * b8)
                + g3 * (a3 * b3 + a7 * b7)
                + g4 * (a4 * b4 + a6 * b6)
                + g5 * (a5 * b5)
            )
        if r < 10:
            continue
        top = r - 10
        rows = (
            ring[top % 11], ring[(top + 1) % 11], ring[(top + 2) % 11], ring[(top + 3) % 11], ring[(top + 4) % 11],
            ring[(top + 5) % 11], ring[(top + 6) % 11], ring[(top + 7) % 11], ring[(top + 8) % 11],
            ring[(top + 9) % 11], ring[(top + 10) % 11],
        )  # fmt: skip
        g = (g0, g1, g2, g3, g4, g5)
        row_cs, row_ssim = np.float32(0.0), np.float32(0.0)
        for c in range(out_width):
            mx, my, e_squares, e_product = (
                _down(rows, 0, c, g),
                _down(rows, 1, c, g),
                _down(rows, 2, c, g),
                _down(rows, 3, c, g),
            )
            means_product, means_squares = mx * my, mx * mx + my * my
            structure = two * (e_product - means_product) + c2  # 2cov + C2
            luminance_den = means_squares + c1
            inverse = one / ((e_squares - means_squares + c2) * luminance_den)
            row_cs += structure * luminance_den * inverse
            row_ssim += structure * (two * means_product + c1) * inverse
        cs_total += float(row_cs)
        ssim_total += float(row_ssim)
    return cs_total, ssim_total

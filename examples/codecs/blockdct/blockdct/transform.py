"""Block transforms: the basis comes from the package's weights (basis.safetensors), not from code."""

import numpy as np

BLOCK = 8


def blocks(plane: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H/8, W/8, 8, 8), the plane padded to whole blocks by repeating its edge."""
    n, h, w = plane.shape
    padded = np.pad(plane, ((0, 0), (0, -h % BLOCK), (0, -w % BLOCK)), mode="edge")
    _, ph, pw = padded.shape
    return padded.reshape(n, ph // BLOCK, BLOCK, pw // BLOCK, BLOCK).transpose(0, 1, 3, 2, 4)


def unblocks(tiles: np.ndarray, h: int, w: int) -> np.ndarray:
    n, bh, bw, _, _ = tiles.shape
    return tiles.transpose(0, 1, 3, 2, 4).reshape(n, bh * BLOCK, bw * BLOCK)[:, :h, :w]


def forward(tiles: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return basis @ tiles @ basis.T


def inverse(coefficients: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return basis.T @ coefficients @ basis

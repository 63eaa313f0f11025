"""yuv420p <-> RGB for codecs that only take RGB (JPEG, WebP, AVIF through OpenCV).

BT.601 limited-range matrix; chroma is upsampled by pixel replication and
downsampled by a 2x2 mean, so a round trip without a codec loses only rounding.
"""

from __future__ import annotations

import numpy as np

RGB_CONVERSION = (
    "BT.601 limited-range YCbCr <-> full-range RGB; chroma upsampled by pixel replication, "
    "downsampled by 2x2 mean; rounded to 8 bits"
)

# Rows give Y, Cb, Cr (minus offsets) from R, G, B in [0, 255].
_RGB_TO_YCC = (
    np.array(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ]
    )
    / 255.0
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)
_OFFSETS = np.array([16.0, 128.0, 128.0])


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One frame's planes to an (H, W, 3) uint8 RGB image."""
    cb = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)
    cr = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)
    ycc = np.stack([y, cb, cr], axis=-1).astype(np.float64) - _OFFSETS
    rgb = ycc @ _YCC_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An (H, W, 3) uint8 RGB image (even H and W) to yuv420p planes."""
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCC.T + _OFFSETS
    h, w = rgb.shape[:2]
    chroma = ycc[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    planes = [ycc[..., 0], chroma[..., 0], chroma[..., 1]]
    y, u, v = (np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes)
    return y, u, v

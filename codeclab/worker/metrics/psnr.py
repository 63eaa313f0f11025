"""PSNR on 8-bit planes, computed the way ffmpeg's psnr filter does."""

from __future__ import annotations

import math

import cv2
import numpy as np

# Identical planes have infinite PSNR; a finite cap keeps clip means and JSON usable.
PSNR_CAP_DB = 100.0

_PEAK = 255.0


def plane_psnr(ref: np.ndarray, dec: np.ndarray) -> float:
    """PSNR in dB of one uint8 plane: 10*log10(255^2/MSE), capped at PSNR_CAP_DB."""
    if ref.shape != dec.shape:
        raise ValueError(f"plane shapes differ: {ref.shape} vs {dec.shape}")
    # NORM_L2SQR sums squared differences in float64: exact for any plane under 2^37 pixels.
    mse = cv2.norm(ref, dec, cv2.NORM_L2SQR) / ref.size
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(_PEAK * _PEAK / mse))


def psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    """Weighted PSNR of one frame, (6*Y + U + V)/8, the common codec-paper convention."""
    return (6.0 * psnr_y + psnr_u + psnr_v) / 8.0

"""PSNR on 8- or 10-bit planes, computed the way ffmpeg's psnr filter does (peak 2^bit_depth - 1)."""

from __future__ import annotations

import math

import cv2
import numpy as np

# Identical planes have infinite PSNR; a finite cap keeps clip means and JSON usable.
PSNR_CAP_DB = 100.0


def plane_psnr(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> float:
    """PSNR in dB of one plane: 10*log10(peak^2/MSE), capped at PSNR_CAP_DB; peak is 1023 for 10-bit planes."""
    if ref.shape != dec.shape or ref.dtype != dec.dtype:
        raise ValueError(f"planes differ: {ref.shape} {ref.dtype} vs {dec.shape} {dec.dtype}")
    if peak > np.iinfo(ref.dtype).max:
        raise ValueError(f"peak {peak} does not fit {ref.dtype} planes")
    # NORM_L2SQR sums squared differences in float64: exact for any plane under 2^37 pixels.
    mse = cv2.norm(ref, dec, cv2.NORM_L2SQR) / ref.size
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(peak * peak / mse))


def psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    """Weighted PSNR of one frame, (6*Y + U + V)/8, the common codec-paper convention."""
    return (6.0 * psnr_y + psnr_u + psnr_v) / 8.0

"""SSIM (Wang et al. 2004) and MS-SSIM (Wang et al. 2003) on 8- or 10-bit luma planes.

A 10-bit plane is scaled by 255/1023 first: SSIM with L=1023 is SSIM with L=255 on the
scaled samples, since C1 and C2 scale with L^2 as the moments do.

Every statistic is taken over the valid region only: the pixels where the whole 11x11
window fits, which is what scikit-image's crop and pytorch_msssim's unpadded
convolution both give.
"""

from __future__ import annotations

import cv2
import numpy as np

_WINDOW = 11
_SIGMA = 1.5
_BORDER = _WINDOW // 2
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_KERNEL = cv2.getGaussianKernel(_WINDOW, _SIGMA, cv2.CV_32F)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_DTYPE_OF_PEAK = {255: (np.dtype(np.uint8),) * 2, 1023: (np.dtype(np.uint16),) * 2}


def plane_ssim(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> float:
    """Gaussian SSIM of two planes with samples up to `peak` (L), mean over the valid region."""
    luminance, cs = _ssim_maps(*_as_floats(ref, dec, peak))
    return _mean(luminance * cs)


def plane_ms_ssim(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> float:
    """MS-SSIM of two planes with samples up to `peak` over ms_ssim_scales() scales."""
    return ssim_and_ms_ssim(ref, dec, peak)[1]


def ssim_and_ms_ssim(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> tuple[float, float]:
    """Both metrics at once: MS-SSIM's first scale reuses SSIM's filtered moments."""
    x, y = _as_floats(ref, dec, peak)
    scales = ms_ssim_scales(*x.shape)
    luminance, cs = _ssim_maps(x, y)
    full_ssim = _mean(luminance * cs)
    # Contrast-structure at every scale but the coarsest, which takes the full SSIM.
    terms: list[float] = []
    for _ in range(scales - 1):
        terms.append(_mean(cs))
        x, y = _halve(x), _halve(y)
        luminance, cs = _ssim_maps(x, y)
    terms.append(_mean(luminance * cs))
    # relu, as pytorch_msssim: a negative base has no real fractional power.
    bases = np.maximum(terms, 0.0)
    return full_ssim, float(np.prod(bases ** _scale_weights(scales)))


def ms_ssim_scales(height: int, width: int) -> int:
    """Scales to use: up to 5, fewer when the coarsest would be under the 11-pixel window.

    pytorch_msssim refuses frames with a side of 160 or less; fewer scales, with their
    weights rescaled, keep small test clips measurable.
    """
    if min(height, width) < _WINDOW:
        raise ValueError(f"{width}x{height} is smaller than the {_WINDOW}-pixel SSIM window")
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS):
        height, width = (height + 1) // 2, (width + 1) // 2
        if min(height, width) < _WINDOW:
            break
        scales += 1
    return scales


def _scale_weights(scales: int) -> np.ndarray:
    """The first `scales` weights, rescaled to the full set's total.

    The published weights sum to 1.0001, not 1; keeping that total leaves 5-scale
    results identical to pytorch_msssim's.
    """
    used = np.array(MS_SSIM_WEIGHTS[:scales])
    return used * (sum(MS_SSIM_WEIGHTS) / used.sum())


def _as_floats(ref: np.ndarray, dec: np.ndarray, peak: int) -> tuple[np.ndarray, np.ndarray]:
    """Both planes as float32 on the 0..255 scale the constants are for."""
    if ref.shape != dec.shape:
        raise ValueError(f"plane shapes differ: {ref.shape} vs {dec.shape}")
    if (ref.dtype, dec.dtype) != _DTYPE_OF_PEAK.get(peak, ()):
        raise ValueError(f"planes with peak {peak} must both be {_DTYPE_OF_PEAK.get(peak)}, got {ref.dtype}")
    if min(ref.shape) < _WINDOW:
        raise ValueError(f"plane {ref.shape} is smaller than the {_WINDOW}-pixel SSIM window")
    # float32 is about 2x faster than float64 here and moves SSIM by under 1e-5.
    if peak == 255:
        return ref.astype(np.float32), dec.astype(np.float32)
    scale = np.float32(255 / peak)
    return ref.astype(np.float32) * scale, dec.astype(np.float32) * scale


def _ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps over the valid region."""
    mx, my = _blur(x), _blur(y)
    mxx, myy, mxy = mx * mx, my * my, mx * my
    # Population (co)variances: E[xy] - E[x]E[y] under the Gaussian window.
    vx, vy, vxy = _blur(x * x) - mxx, _blur(y * y) - myy, _blur(x * y) - mxy
    luminance = (2 * mxy + _C1) / (mxx + myy + _C1)
    cs = (2 * vxy + _C2) / (vx + vy + _C2)
    return luminance, cs


def _blur(img: np.ndarray) -> np.ndarray:
    # The border mode never matters: the border it touches is cropped away.
    out = cv2.sepFilter2D(img, cv2.CV_32F, _KERNEL, _KERNEL, borderType=cv2.BORDER_REFLECT)
    return out[_BORDER:-_BORDER, _BORDER:-_BORDER]


def _halve(img: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd side gets a leading zero row/column that is averaged in,
    as torch avg_pool2d(kernel 2, stride 2, padding=size % 2) does with count_include_pad."""
    top, left = img.shape[0] % 2, img.shape[1] % 2
    padded = cv2.copyMakeBorder(img, top, 0, left, 0, cv2.BORDER_CONSTANT, value=0)
    h, w = padded.shape
    # INTER_AREA at an exact factor of 2 is the plain 2x2 mean.
    return cv2.resize(padded, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def _mean(values: np.ndarray) -> float:
    # cv2.mean accumulates in double, and is faster than numpy on cropped views.
    return float(cv2.mean(values)[0])

"""SSIM (Wang et al. 2004) and MS-SSIM (Wang et al. 2003) on 8- or 10-bit luma planes.

A 10-bit plane is scaled by 255/1023 first: SSIM with L=1023 is SSIM with L=255 on the
scaled samples, since C1 and C2 scale with L^2 as the moments do.

Every statistic is taken over the valid region only: the pixels where the whole 11x11
window fits, which is what scikit-image's crop and pytorch_msssim's unpadded
convolution both give.

Speed: each scale is one call of a compiled kernel (ssim_kernel.py) that filters and sums in one
pass, with no plane-sized temporaries; the planes and the kernel's scratch live in an SsimWorkspace
allocated once per plane size and reused for every frame (no allocation, and so no page faults,
per frame).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from functools import cache
from importlib.metadata import version

import cv2
import numpy as np

_WINDOW = 11
_SIGMA = 1.5
BORDER = _WINDOW // 2
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
# The Gaussian window's 1-D factor, float32, (11, 1); the torch path filters with the same taps.
KERNEL = cv2.getGaussianKernel(_WINDOW, _SIGMA, cv2.CV_32F)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_DTYPE_OF_PEAK = {255: (np.dtype(np.uint8),) * 2, 1023: (np.dtype(np.uint16),) * 2}
# The window's taps for the compiled kernel, which pairs the taps at the same distance from the centre.
TAPS = np.ascontiguousarray(KERNEL.ravel())
_C1_32, _C2_32 = np.float32(C1), np.float32(C2)
# numba imports this only to look for a BLAS, which the kernel does not use: 0.4 s of scipy.linalg a job.
_UNUSED_BLAS = "scipy.linalg.cython_blas"
_LOADING = threading.Lock()
_CACHE_LINE = 64  # bytes: x86-64's line (and most arm64 servers'; Apple's cores have 128)
_FLOATS_PER_LINE = _CACHE_LINE // 4


def cpu_implementation() -> str:
    """What computes SSIM and MS-SSIM on the CPU, with versions: pinned in the conditions of every result."""
    return (
        f"codeclab's ssim_kernel compiled by numba {version('numba')}: separable window in float32 with FMA, "
        f"row sums in float32, totals in float64; OpenCV {cv2.__version__} INTER_AREA for the 2x2 pooling; "
        "the same values whatever the thread count"
    )


@cache
def load_kernel() -> Callable[..., tuple[float, float]]:
    """The compiled kernel, imported on first use (numba and its on-disk cache load in about 0.6 s)."""
    # measure_quality's threads all ask at once: one import at a time, so two never interleave the hiding
    with _LOADING:
        hide_blas = "numba" not in sys.modules and _UNUSED_BLAS not in sys.modules
        if hide_blas:
            sys.modules[_UNUSED_BLAS] = None  # type: ignore[assignment]  # its import raises ImportError
        try:
            from codeclab.worker.metrics.ssim_kernel import ssim_sums
        finally:
            if hide_blas:
                del sys.modules[_UNUSED_BLAS]
    return ssim_sums


def plane_ssim(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> float:
    """Gaussian SSIM of two planes with samples up to `peak` (L), mean over the valid region."""
    check_planes(ref, dec, peak)
    height, width = ref.shape
    return SsimWorkspace(height, width, scales=1).measure(ref, dec, peak)[0]


def plane_ms_ssim(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> float:
    """MS-SSIM of two planes with samples up to `peak` over ms_ssim_scales() scales."""
    return ssim_and_ms_ssim(ref, dec, peak)[1]


def ssim_and_ms_ssim(ref: np.ndarray, dec: np.ndarray, peak: int = 255) -> tuple[float, float]:
    """Both metrics at once: MS-SSIM's first scale reuses SSIM's filtered moments."""
    check_planes(ref, dec, peak)
    height, width = ref.shape
    return SsimWorkspace(height, width).measure(ref, dec, peak)


def check_planes(ref: np.ndarray, dec: np.ndarray, peak: int) -> None:
    if ref.shape != dec.shape:
        raise ValueError(f"plane shapes differ: {ref.shape} vs {dec.shape}")
    if (ref.dtype, dec.dtype) != _DTYPE_OF_PEAK.get(peak, ()):
        raise ValueError(f"planes with peak {peak} must both be {_DTYPE_OF_PEAK.get(peak)}, got {ref.dtype}")
    if min(ref.shape) < _WINDOW:
        raise ValueError(f"plane {ref.shape} is smaller than the {_WINDOW}-pixel SSIM window")


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


def combine_ms_ssim(terms: list[float]) -> float:
    """MS-SSIM from each scale's term: mean contrast-structure at the finer scales, full SSIM at the coarsest."""
    # relu, as pytorch_msssim: a negative base has no real fractional power.
    bases = np.maximum(terms, 0.0)
    return float(np.prod(bases ** _scale_weights(len(terms))))


def _scale_weights(scales: int) -> np.ndarray:
    """The first `scales` weights, rescaled to the full set's total.

    The published weights sum to 1.0001, not 1; keeping that total leaves 5-scale
    results identical to pytorch_msssim's.
    """
    used = np.array(MS_SSIM_WEIGHTS[:scales])
    return used * (sum(MS_SSIM_WEIGHTS) / used.sum())


def kernel_ring(columns: int) -> np.ndarray:
    """The kernel's ring, (11, 4, >= columns) float32, each row starting a cache line and an odd number of lines long.

    The kernel reads its 44 rows at once: rows a whole even number of lines apart crowd into the same L1
    sets (a 1280-column ring ran a third slower than the unpadded 1270), and rows starting mid-line split
    loads across lines. An odd line count spreads them over every set: 8% off the full-scale pass at 720p.
    """
    lines = -(-columns // _FLOATS_PER_LINE)
    padded = (lines | 1) * _FLOATS_PER_LINE
    size = _WINDOW * 4 * padded
    storage = np.empty(size + _FLOATS_PER_LINE, np.float32)
    start = (-storage.ctypes.data % _CACHE_LINE) // storage.itemsize
    return storage[start : start + size].reshape(_WINDOW, 4, padded)


class _Scale:
    """One scale of the pyramid: the two planes in float32, and the kernel's ring of rows for their width."""

    def __init__(self, height: int, width: int) -> None:
        self.x, self.y = np.empty((height, width), np.float32), np.empty((height, width), np.float32)
        self.ring = kernel_ring(width - 2 * BORDER)
        odd = (height % 2, width % 2)
        # avg_pool2d's zero padding of an odd side, written once: only the interior is rewritten per frame.
        self.padded = np.zeros((height + odd[0], width + odd[1]), np.float32) if any(odd) else None
        self.count = (height - 2 * BORDER) * (width - 2 * BORDER)

    def means(self) -> tuple[float, float]:
        """Mean contrast-structure and mean SSIM over the valid region."""
        cs, ssim = load_kernel()(self.x, self.y, TAPS, _C1_32, _C2_32, self.ring)
        return cs / self.count, ssim / self.count

    def halve_into(self, coarser: _Scale) -> None:
        """2x2 average pooling; an odd side gets a leading zero row/column that is averaged in,
        as torch avg_pool2d(kernel 2, stride 2, padding=size % 2) does with count_include_pad."""
        for src, dst in ((self.x, coarser.x), (self.y, coarser.y)):
            if self.padded is not None:
                top, left = self.padded.shape[0] - src.shape[0], self.padded.shape[1] - src.shape[1]
                self.padded[top:, left:] = src
                src = self.padded
            # INTER_AREA at an exact factor of 2 is the plain 2x2 mean.
            cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_AREA)


class SsimWorkspace:
    """Every buffer SSIM and MS-SSIM need for planes of one size, allocated once and reused for every frame.

    Not thread-safe: give each thread its own.
    """

    def __init__(self, height: int, width: int, scales: int | None = None) -> None:
        self.shape = (height, width)
        self.scales = [_Scale(height, width)]
        for _ in range((scales or ms_ssim_scales(height, width)) - 1):
            finer = self.scales[-1].x.shape
            self.scales.append(_Scale((finer[0] + 1) // 2, (finer[1] + 1) // 2))

    def measure(self, ref: np.ndarray, dec: np.ndarray, peak: int) -> tuple[float, float]:
        """SSIM and MS-SSIM of two checked planes of this workspace's size."""
        if cv2.norm(ref, dec, cv2.NORM_INF) == 0:
            # Exactly 1 by definition; the kernel's float32 rounding would give 1 - 4e-8 for a lossless frame.
            return 1.0, 1.0
        first = self.scales[0]
        if peak == 255:
            np.copyto(first.x, ref)
            np.copyto(first.y, dec)
        else:
            factor = np.float32(255 / peak)
            np.multiply(ref, factor, out=first.x)
            np.multiply(dec, factor, out=first.y)
        means = []
        for index, scale in enumerate(self.scales):
            if index:
                self.scales[index - 1].halve_into(scale)
            means.append(scale.means())
        # Contrast-structure at every scale but the coarsest, which takes the full SSIM.
        terms = [cs for cs, _ in means[:-1]] + [means[-1][1]]
        return means[0][1], combine_ms_ssim(terms)

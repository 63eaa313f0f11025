"""SSIM (Wang et al. 2004) and MS-SSIM (Wang et al. 2003) on 8- or 10-bit luma planes.

A 10-bit plane is scaled by 255/1023 first: SSIM with L=1023 is SSIM with L=255 on the
scaled samples, since C1 and C2 scale with L^2 as the moments do.

Every statistic is taken over the valid region only: the pixels where the whole 11x11
window fits, which is what scikit-image's crop and pytorch_msssim's unpadded
convolution both give.

Speed: the planes are measured in strips of STRIP_ROWS output rows, so every float32
temporary stays in the CPU's cache, and all of them live in an SsimWorkspace that is
allocated once per plane size and reused for every frame (no allocation, and so no page
faults, per frame). Per-pixel maps are float32; the sums over them are float64.
"""

from __future__ import annotations

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
_HALF_C1, _C1_32 = np.float32(C1 / 2), np.float32(C1)
# Output rows per strip: the strip's ten float32 buffers then fit a core's L2 cache at 720p.
STRIP_ROWS = 64
CPU_IMPLEMENTATION = (
    f"OpenCV {cv2.__version__} sepFilter2D in float32 over {STRIP_ROWS}-row strips, "
    "sums in float64; the same values whatever the thread count"
)


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


class _Strip:
    """float32 scratch for one strip of a plane `width` wide."""

    def __init__(self, width: int) -> None:
        rows, valid = (STRIP_ROWS + 2 * BORDER, width), (STRIP_ROWS, width - 2 * BORDER)
        self.squares, self.product = np.empty(rows, np.float32), np.empty(rows, np.float32)
        self.blurred = [np.empty(rows, np.float32) for _ in range(4)]
        self.a, self.b, self.c = (np.empty(valid, np.float32) for _ in range(3))

    def sums(self, x: np.ndarray, y: np.ndarray, means_of: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
        """Sums of contrast-structure and of SSIM over the valid rows of the strip x, y (float64).

        `means_of` is what to filter for E[x] and E[y]: x and y, or the same rows as 8-bit
        samples, which filter faster to the same float32 values.
        """
        rows = x.shape[0]
        out = rows - 2 * BORDER
        squares, product = self.squares[:rows], self.product[:rows]
        cv2.multiply(x, x, dst=squares)
        cv2.accumulateSquare(y, squares)
        cv2.multiply(x, y, dst=product)
        # Only E[x^2] + E[y^2] is ever needed, so x^2 + y^2 is filtered once.
        for src, dst in zip((*means_of, squares, product), self.blurred, strict=True):
            # The border mode never matters: the border it touches is cropped away.
            cv2.sepFilter2D(src, cv2.CV_32F, KERNEL, KERNEL, dst=dst[:rows], borderType=cv2.BORDER_REFLECT)
        mx, my, e_squares, e_product = (b[BORDER : rows - BORDER, BORDER:-BORDER] for b in self.blurred)
        a, b, c = self.a[:out], self.b[:out], self.c[:out]
        cv2.multiply(mx, my, dst=a)  # E[x]E[y]
        cv2.multiply(mx, mx, dst=b)
        cv2.accumulateSquare(my, b)  # E[x]^2 + E[y]^2
        # Population (co)variances under the window: 2cov + C2 over var_x + var_y + C2.
        cv2.addWeighted(e_product, 2.0, a, -2.0, C2, dst=e_product)
        cv2.addWeighted(e_squares, 1.0, b, -1.0, C2, dst=e_squares)
        cv2.divide(e_product, e_squares, dst=c)  # contrast-structure
        cs = cv2.sumElems(c)[0]
        # Luminance (2 E[x]E[y] + C1) / (E[x]^2 + E[y]^2 + C1), the 2 taken out as the divide's scale.
        np.add(a, _HALF_C1, out=a)
        np.add(b, _C1_32, out=b)
        cv2.divide(a, b, dst=a, scale=2.0)
        cv2.multiply(a, c, dst=a)
        return cs, cv2.sumElems(a)[0]


class _Scale:
    """One scale of the pyramid: the two planes in float32, and the strip scratch for their width."""

    def __init__(self, height: int, width: int) -> None:
        self.x, self.y = np.empty((height, width), np.float32), np.empty((height, width), np.float32)
        self.strip = _Strip(width)
        odd = (height % 2, width % 2)
        # avg_pool2d's zero padding of an odd side, written once: only the interior is rewritten per frame.
        self.padded = np.zeros((height + odd[0], width + odd[1]), np.float32) if any(odd) else None
        self.count = (height - 2 * BORDER) * (width - 2 * BORDER)

    def means(self, samples: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, float]:
        """Mean contrast-structure and mean SSIM over the valid region; `samples`: x and y as 8-bit planes."""
        height = self.x.shape[0]
        means_of = samples or (self.x, self.y)
        cs = ssim = 0.0
        for top in range(0, height - 2 * BORDER, STRIP_ROWS):
            bottom = min(top + STRIP_ROWS + 2 * BORDER, height)
            rows = slice(top, bottom)
            strip_cs, strip_ssim = self.strip.sums(self.x[rows], self.y[rows], (means_of[0][rows], means_of[1][rows]))
            cs, ssim = cs + strip_cs, ssim + strip_ssim
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
            means.append(scale.means((ref, dec) if index == 0 and peak == 255 else None))
        # Contrast-structure at every scale but the coarsest, which takes the full SSIM.
        terms = [cs for cs, _ in means[:-1]] + [means[-1][1]]
        return means[0][1], combine_ms_ssim(terms)

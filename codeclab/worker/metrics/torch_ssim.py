"""SSIM and MS-SSIM with torch, for CUDA hosts: ssim.py's definition and arithmetic on another device.

The same float32 taps and the same x^2 + y^2 filtering as the CPU kernel (ssim_kernel.py),
with float64 sums; the order of the additions differs (the kernel pairs symmetric taps and
fuses multiply-adds), so the values agree with the CPU path's to within TORCH_TOLERANCE, not
bit for bit. The filter is a plain convolution with unpadded ("valid") output, so no border is
ever computed. Runs on any torch device: the tests run it on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)

from codeclab.worker.metrics.ssim import C1, C2, KERNEL, combine_ms_ssim, ms_ssim_scales

# The largest difference from the CPU kernel's SSIM and MS-SSIM seen on real x264 frames is
# 3.1e-6 (carphone at crf 25, 35 and 45, 176x144), most of it torch's own: the kernel stays
# within 1.8e-6 of scikit-image on the same frames. Both paths are float32.
TORCH_TOLERANCE = 5e-6


def torch_implementation(device: str) -> str:
    return f"torch {torch.__version__} conv2d in float32 on {device}, sums in float64"


class TorchSsimWorkspace:
    """SSIM and MS-SSIM of planes of one size on `device`; like SsimWorkspace, one per thread."""

    def __init__(self, height: int, width: int, device: str) -> None:
        self.device = torch.device(device)
        self.scales = ms_ssim_scales(height, width)
        taps = torch.from_numpy(KERNEL[:, 0].copy()).to(self.device)
        self.row_taps, self.column_taps = taps.view(1, 1, 1, -1), taps.view(1, 1, -1, 1)
        # Host staging for the two planes, pinned on CUDA so the copies run asynchronously; made
        # on first use, int32 for 10-bit planes (torch's uint16 tensors support few operations).
        self.shape = (height, width)
        self.staging: list[torch.Tensor] = []

    @torch.inference_mode()
    def measure(self, ref: np.ndarray, dec: np.ndarray, peak: int) -> tuple[float, float]:
        """SSIM and MS-SSIM of two checked planes (ssim.check_planes) of this workspace's size."""
        if not self.staging:
            dtype = torch.uint8 if peak == 255 else torch.int32
            pinned = self.device.type == "cuda"
            self.staging = [torch.empty(self.shape, dtype=dtype, pin_memory=pinned) for _ in range(2)]
        x, y = (self._floats(plane, host, peak) for plane, host in zip((ref, dec), self.staging, strict=True))
        sums = []
        for scale in range(self.scales):
            if scale:
                x, y = _halve(x), _halve(y)
            sums.append(self._means(x, y))
        # One transfer back for all the scales' means.
        means = torch.stack([value for pair in sums for value in pair]).tolist()
        cs, ssim = means[0::2], means[1::2]
        return ssim[0], combine_ms_ssim([*cs[:-1], ssim[-1]])

    def _floats(self, plane: np.ndarray, host: torch.Tensor, peak: int) -> torch.Tensor:
        # The previous frame's copy out of `host` is done: measure() waited for its results.
        np.copyto(host.numpy(), plane)
        floats = host.to(self.device, non_blocking=True).to(torch.float32)[None, None]
        if peak == 255:
            return floats
        return floats * torch.tensor(255 / peak, dtype=torch.float32, device=self.device)

    def _blur(self, maps: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(maps, self.row_taps), self.column_taps)

    def _means(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean contrast-structure and mean SSIM over the valid region, as float64 tensors."""
        stacked = torch.cat([x, y, x * x + y * y, x * y])
        mx, my, e_squares, e_product = self._blur(stacked)
        mxy = mx * my
        m_squares = mx * mx + my * my
        cs = (2 * (e_product - mxy) + C2) / (e_squares - m_squares + C2)
        luminance = (2 * mxy + C1) / (m_squares + C1)
        return cs.double().mean(), (luminance * cs).double().mean()


def _halve(plane: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling, zero-padding an odd side, as pytorch_msssim does."""
    padding = (plane.shape[-2] % 2, plane.shape[-1] % 2)
    return F.avg_pool2d(plane, kernel_size=2, stride=2, padding=padding)

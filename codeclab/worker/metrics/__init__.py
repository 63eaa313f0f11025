"""Per-frame quality of a decoded clip against its reference, at its bit depth: PSNR, SSIM, MS-SSIM, VMAF."""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from codeclab.worker.metrics.psnr import PSNR_CAP_DB, plane_psnr, psnr_yuv
from codeclab.worker.metrics.ssim import (
    SsimWorkspace,
    check_planes,
    cpu_implementation,
    ms_ssim_scales,
    plane_ms_ssim,
    plane_ssim,
    ssim_and_ms_ssim,
)
from codeclab.worker.metrics.vmaf import VMAF_MODEL, vmaf_per_frame, vmaf_version
from codeclab.worker.video import FrameCallback, FrameSource

if TYPE_CHECKING:
    from codeclab.worker.metrics.torch_ssim import TorchSsimWorkspace

# measure_quality's threads at most: each holds its own float32 copy of a frame's luma pyramid.
MAX_WORKERS = 4

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


__all__ = [
    "MAX_WORKERS",
    "PSNR_CAP_DB",
    "VMAF_MODEL",
    "FrameSource",
    "measure_quality",
    "metric_conditions",
    "metrics_torch_device",
    "metrics_workers",
    "ms_ssim_scales",
    "plane_ms_ssim",
    "plane_psnr",
    "plane_ssim",
    "psnr_yuv",
    "ssim_and_ms_ssim",
    "vmaf_per_frame",
    "vmaf_version",
]


def metric_conditions(bit_depth: int) -> dict[str, str]:
    """Written into every result: the same name can hide different variants across tools.

    8-bit keeps the definitions' words it always had; SSIM's and MS-SSIM's end by naming the
    implementation that computed them, so results from the CPU kernel and the torch paths (whose
    values differ by up to TORCH_TOLERANCE) are told apart.
    """
    peak = (1 << bit_depth) - 1
    scaled = "" if bit_depth == 8 else f" (samples scaled by 255/{peak}, so the constants are those of L=255)"
    computed = f"; computed with {ssim_implementation(metrics_torch_device())}"
    vmaf_input = "" if bit_depth == 8 else f", both inputs yuv420p10le y4m (libvmaf's own {bit_depth}-bit path)"
    return {
        "psnr": (
            f"per-frame MSE on {bit_depth}-bit planes, 10*log10({peak}^2/MSE), capped at {PSNR_CAP_DB:g} dB "
            "(matches ffmpeg's psnr filter); clip value = mean of per-frame PSNR"
        ),
        "psnr_yuv": "(6*Y+U+V)/8 of the per-frame plane PSNRs; clip value = mean over frames",
        "ssim": (
            f"Wang 2004 on Y: Gaussian window 11x11 sigma 1.5, K1=0.01 K2=0.03 L={peak}{scaled}, population "
            "covariance, mean over the valid region (= skimage gaussian_weights, 5-px crop); "
            f"clip value = mean over frames{computed}"
        ),
        "ms_ssim": (
            "Wang 2003 on Y: weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling "
            "with zero padding of odd sides, relu'd contrast-structure at the finer scales and full "
            "SSIM at the coarsest, valid region (= pytorch_msssim); fewer scales, their weights "
            f"rescaled to the full set's total, when the coarsest would be under 11 px{scaled}; "
            f"clip value = mean over frames{computed}"
        ),
        "vmaf": (
            f"libvmaf via ffmpeg's libvmaf filter, built-in model {VMAF_MODEL}, distorted as main "
            f"input{vmaf_input}, per-frame 'vmaf' from the JSON log; clip value = mean over frames"
        ),
    }


def measure_quality(
    ref: FrameSource,
    dec: FrameSource,
    on_frame: FrameCallback | None = None,
    workers: int | None = None,
    torch_device: str | None = None,
) -> list[dict[str, float]]:
    """Per-frame psnr_y/u/v, psnr_yuv, ssim and ms_ssim; on_frame(n) after frame n, in order.

    `workers` threads (default: metrics_workers()) each measure whole frames with their own
    buffers, so the values are the same whatever their number. Frames are read in order from
    this thread, and at most workers + 1 of them are held at once. SSIM and MS-SSIM run with
    torch on `torch_device` when one is given (default: metrics_torch_device()), else with the compiled CPU kernel.
    """
    if (ref.frames, ref.width, ref.height, ref.pix_fmt) != (dec.frames, dec.width, dec.height, dec.pix_fmt):
        raise ValueError(
            f"reference is {ref.frames} frames of {ref.width}x{ref.height} {ref.pix_fmt}, "
            f"decoded is {dec.frames} frames of {dec.width}x{dec.height} {dec.pix_fmt}"
        )
    count = workers or metrics_workers()
    device = torch_device or metrics_torch_device()
    measure_frame = _FrameMeter(ref.height, ref.width, ref.peak, device)
    results: list[dict[str, float]] = []
    pending: deque[Future[dict[str, float]]] = deque()

    def collect() -> None:
        results.append(pending.popleft().result())
        if on_frame:
            on_frame(len(results))

    with ThreadPoolExecutor(count, thread_name_prefix="metrics") as pool:
        for index in range(ref.frames):
            pending.append(pool.submit(measure_frame, ref.frame_planes(index), dec.frame_planes(index)))
            if len(pending) > count:
                collect()
        while pending:
            collect()
    return results


def metrics_workers() -> int:
    """Threads for measure_quality: the usable cores, at most MAX_WORKERS (each holds a frame's buffers)."""
    # The affinity mask where the platform has one: a container may see more cores than it may use.
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, usable))


@cache
def metrics_torch_device() -> str | None:
    """ "cuda" on a host where torch sees a CUDA device: SSIM and MS-SSIM then run there. None: the CPU kernel."""
    from codeclab.worker.codecs.custom import has_cuda

    if not has_cuda():
        return None
    import torch  # only on CUDA hosts: importing it takes a second

    return "cuda" if torch.cuda.is_available() else None


def ssim_implementation(torch_device: str | None) -> str:
    """What computes SSIM and MS-SSIM, with its version: pinned in the conditions of every result."""
    if torch_device is None:
        return cpu_implementation()
    from codeclab.worker.metrics.torch_ssim import torch_implementation

    return torch_implementation(torch_device)


class _FrameMeter:
    """One frame's metrics; each thread that calls it gets its own SSIM workspace, made on first use."""

    def __init__(self, height: int, width: int, peak: int, torch_device: str | None) -> None:
        self.shape, self.peak, self.torch_device = (height, width), peak, torch_device
        self.local = threading.local()

    def __call__(self, ref_planes: Planes, dec_planes: Planes) -> dict[str, float]:
        y, u, v = (plane_psnr(r, d, self.peak) for r, d in zip(ref_planes, dec_planes, strict=True))
        check_planes(ref_planes[0], dec_planes[0], self.peak)
        frame_ssim, frame_ms_ssim = self._workspace().measure(ref_planes[0], dec_planes[0], self.peak)
        return {
            "psnr_y": y,
            "psnr_u": u,
            "psnr_v": v,
            "psnr_yuv": psnr_yuv(y, u, v),
            "ssim": frame_ssim,
            "ms_ssim": frame_ms_ssim,
        }

    def _workspace(self) -> SsimWorkspace | TorchSsimWorkspace:
        workspace: SsimWorkspace | TorchSsimWorkspace | None = getattr(self.local, "workspace", None)
        if workspace is None:
            workspace = make_workspace(*self.shape, self.torch_device)
            self.local.workspace = workspace
        return workspace


def make_workspace(height: int, width: int, torch_device: str | None) -> SsimWorkspace | TorchSsimWorkspace:
    """The SSIM workspace: the CPU kernel's, or torch's on `torch_device`."""
    if torch_device is None:
        return SsimWorkspace(height, width)
    from codeclab.worker.metrics.torch_ssim import TorchSsimWorkspace

    return TorchSsimWorkspace(height, width, torch_device)

"""Per-frame quality of a decoded clip against its reference, at its bit depth: PSNR, SSIM, MS-SSIM, VMAF."""

from __future__ import annotations

from codeclab.worker.metrics.psnr import PSNR_CAP_DB, plane_psnr, psnr_yuv
from codeclab.worker.metrics.ssim import (
    ms_ssim_scales,
    plane_ms_ssim,
    plane_ssim,
    ssim_and_ms_ssim,
)
from codeclab.worker.metrics.vmaf import VMAF_MODEL, vmaf_per_frame, vmaf_version
from codeclab.worker.video import FrameCallback, FrameSource

__all__ = [
    "PSNR_CAP_DB",
    "VMAF_MODEL",
    "measure_quality",
    "metric_conditions",
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

    8-bit keeps the words it always had, so older results stay comparable.
    """
    peak = (1 << bit_depth) - 1
    scaled = "" if bit_depth == 8 else f" (samples scaled by 255/{peak}, so the constants are those of L=255)"
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
            "clip value = mean over frames"
        ),
        "ms_ssim": (
            "Wang 2003 on Y: weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling "
            "with zero padding of odd sides, relu'd contrast-structure at the finer scales and full "
            "SSIM at the coarsest, valid region (= pytorch_msssim); fewer scales, their weights "
            f"rescaled to the full set's total, when the coarsest would be under 11 px{scaled}; "
            "clip value = mean over frames"
        ),
        "vmaf": (
            f"libvmaf via ffmpeg's libvmaf filter, built-in model {VMAF_MODEL}, distorted as main "
            f"input{vmaf_input}, per-frame 'vmaf' from the JSON log; clip value = mean over frames"
        ),
    }


def measure_quality(
    ref: FrameSource, dec: FrameSource, on_frame: FrameCallback | None = None
) -> list[dict[str, float]]:
    """Per-frame psnr_y/u/v, psnr_yuv, ssim and ms_ssim; on_frame(n) after frame n."""
    if (ref.frames, ref.height, ref.width, ref.pix_fmt) != (dec.frames, dec.height, dec.width, dec.pix_fmt):
        raise ValueError(
            f"reference is {ref.frames} frames of {ref.width}x{ref.height} {ref.pix_fmt}, "
            f"decoded is {dec.frames} frames of {dec.width}x{dec.height} {dec.pix_fmt}"
        )
    results = []
    for index in range(ref.frames):
        results.append(_frame_quality(ref, dec, index))
        if on_frame:
            on_frame(index + 1)
    return results


def _frame_quality(ref: FrameSource, dec: FrameSource, index: int) -> dict[str, float]:
    ref_planes, dec_planes = ref.frame_planes(index), dec.frame_planes(index)
    y, u, v = (plane_psnr(r, d, ref.peak) for r, d in zip(ref_planes, dec_planes, strict=True))
    frame_ssim, frame_ms_ssim = ssim_and_ms_ssim(ref_planes[0], dec_planes[0], ref.peak)
    return {
        "psnr_y": y,
        "psnr_u": u,
        "psnr_v": v,
        "psnr_yuv": psnr_yuv(y, u, v),
        "ssim": frame_ssim,
        "ms_ssim": frame_ms_ssim,
    }

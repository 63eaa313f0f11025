"""The learned codec's networks, in plain torch, coding yuv420p directly: a scale-hyperprior autoencoder
(Ballé et al. 2018) for I-frames, and a conditional one for P-frames.

The luma plane is folded 2x2 into four channels (pixel-unshuffle) and stacked with the two
chroma planes, so a 4:2:0 frame of W x H enters the network as 6 x H/2 x W/2 with no colour
conversion. Three stride-2 convolutions then reach the latents `y` at 1/16 of the luma size,
and the hyper-analysis reaches `z` at 1/64.

Training replaces rounding by additive uniform noise (Ballé 2017); inference rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

SCALE_BOUND = 0.11  # the smallest Gaussian scale, as in the literature
LIKELIHOOD_BOUND = 1e-9
PLANES = 6  # 4 folded luma + U + V
ALIGN = 64  # luma samples; the hyper-latents sit at 1/64 of the frame
# Distortion weights of (Y, U, V) in the training loss, the PSNR-YUV weighting (6Y+U+V)/8.
YUV_WEIGHTS = (6 / 8, 1 / 8, 1 / 8)
RECORD_KEY = "codeclab"  # the safetensors metadata entry holding the architecture and training record (JSON)


@dataclass(frozen=True)
class Architecture:
    """Channel widths (N in the transforms and the hyper-latents, M in the latents) and quality levels."""

    n: int = 64
    m: int = 96
    qualities: int = 6


class GDN(nn.Module):
    """Generalised divisive normalisation, y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), or its inverse.

    beta and gamma stay positive through a softplus reparametrisation.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.full((channels,), math.log(math.e - 1.0)))  # softplus -> 1
        off_diagonal = torch.full((channels, channels), -10.0)
        self.gamma = nn.Parameter(off_diagonal.fill_diagonal_(math.log(math.expm1(0.1))))  # softplus -> 0.1 I

    def forward(self, x: Tensor) -> Tensor:
        beta = F.softplus(self.beta) + 1e-6
        gamma = F.softplus(self.gamma)[:, :, None, None]
        if torch.is_grad_enabled():  # training: autograd needs every intermediate
            norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
            return x * norm if self.inverse else x / norm
        # inference: the same operations in place, one buffer fewer per step (the same floats, bit for bit)
        norm = F.conv2d(x * x, gamma, beta).sqrt_()
        return norm.mul_(x) if self.inverse else torch.div(x, norm, out=norm)


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


class FactorizedPrior(nn.Module):
    """A learned univariate density per channel (Ballé 2018, appendix 6.1), for the hyper-latents z.

    The cumulative is a small monotone network; the likelihood of an integer bin is
    c(v + 1/2) - c(v - 1/2), computed on the side of the sigmoid where it is accurate.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def cumulative_logits(self, values: Tensor) -> Tensor:
        """Logits of the cumulative at `values` of shape (channels, 1, count)."""
        logits = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def likelihood(self, z: Tensor) -> Tensor:
        """P(bin containing z) for z of shape (batch, channels, h, w)."""
        channels = z.shape[1]
        values = z.transpose(0, 1).reshape(channels, 1, -1)
        lower = self.cumulative_logits(values - 0.5)
        upper = self.cumulative_logits(values + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.reshape(channels, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return p.clamp_min(LIKELIHOOD_BOUND)


def gaussian_likelihood(y: Tensor, scales: Tensor) -> Tensor:
    """P(bin containing y) under a zero-mean Gaussian with the given scales."""
    scales = scales.clamp_min(SCALE_BOUND)
    magnitude = y.abs()
    upper = _std_normal_cdf((0.5 - magnitude) / scales)
    lower = _std_normal_cdf((-0.5 - magnitude) / scales)
    return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def _analysis(planes: int, arch: Architecture) -> nn.Sequential:
    """g_a: three 5x5 stride-2 convolutions with GDN between them, from `planes` input planes to M latents."""
    n, m = arch.n, arch.m
    return nn.Sequential(_conv(planes, n), GDN(n), _conv(n, n), GDN(n), _conv(n, m))


def _synthesis(arch: Architecture, planes: int) -> nn.Sequential:
    """g_s: g_a mirrored with inverse GDN, from M latents to `planes` output planes at half the luma size."""
    n, m = arch.n, arch.m
    return nn.Sequential(_deconv(m, n), GDN(n, inverse=True), _deconv(n, n), GDN(n, inverse=True), _deconv(n, planes))


def quantise_(x_hat: Tensor) -> Tensor:
    """A network's output as a decoder's 8-bit samples: clamped to [0, 1], scaled and rounded, in place."""
    return x_hat.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


class Hyperprior(nn.Module):
    """The entropy model both networks share the shape of: gains per quality, h_a, h_s and the prior on z.

    Quality q (0-based here) scales the latents by its gain before rounding (Cui et al. 2021's gain units),
    so one network covers every rate point; the scales h_s predicts are multiplied by the same gain.
    """

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        n, m = arch.n, arch.m
        self.h_a = nn.Sequential(_conv(m, n, 3, 1), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, n))
        self.h_s = nn.Sequential(_deconv(n, n), nn.ReLU(), _deconv(n, n), nn.ReLU(), _conv(n, m, 3, 1), nn.ReLU())
        self.prior = FactorizedPrior(n)
        # Quality q starts with gain e^-1 .. e^1 (a quantisation step 7x finer at the top than at the bottom), so
        # the levels differ from the first step: Adam moves a log-gain by about the learning rate a step.
        spread = torch.linspace(-1.0, 1.0, arch.qualities)[:, None].expand(arch.qualities, m)
        self.log_gain = nn.Parameter(spread.clone())
        self.log_inverse_gain = nn.Parameter(-spread.clone())

    def gain(self, quality: Tensor) -> Tensor:
        return self.log_gain[quality].exp()[:, :, None, None]

    def inverse_gain(self, quality: Tensor) -> Tensor:
        return self.log_inverse_gain[quality].exp()[:, :, None, None]

    def forward(self, y: Tensor, quality: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training: (latents for the synthesis, likelihoods of y, likelihoods of z) for one quality per image.

        The rate sees additive noise (Ballé 2017); the synthesis sees rounded latents through a
        straight-through gradient, as it will at inference."""
        z = self.h_a(y.abs())
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        gain = self.gain(quality)
        scales = self.h_s(z_noisy) * gain
        y_gained = y * gain
        y_noisy = y_gained + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_rounded = y_gained + (torch.round(y_gained) - y_gained).detach()
        synthesis_input = y_rounded * self.inverse_gain(quality)
        return synthesis_input, gaussian_likelihood(y_noisy, scales), self.prior.likelihood(z_noisy)


class IntraNet(nn.Module):
    """An I-frame: the image alone through g_a and g_s (Ballé 2018's scale hyperprior)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.g_a = _analysis(PLANES, arch)
        self.g_s = _synthesis(arch, PLANES)
        self.entropy = Hyperprior(arch)

    def analyse(self, x: Tensor) -> Tensor:
        return self.g_a(x)

    def synthesise(self, latents: Tensor) -> Tensor:
        return self.g_s(latents)

    def forward(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training: (reconstruction, likelihoods of y, likelihoods of z)."""
        latents, y_likelihoods, z_likelihoods = self.entropy(self.analyse(x), quality)
        return self.synthesise(latents), y_likelihoods, z_likelihoods


class InterNet(nn.Module):
    """A P-frame, coded conditioned on its motion-compensated prediction (conditional coding).

    The analysis sees the frame and its prediction; the synthesis decodes features at half
    resolution, fuses them with the prediction, and adds a correction to it. So the latents
    carry only what the prediction lacks, and a perfect prediction costs almost nothing.
    """

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.g_a = _analysis(2 * PLANES, arch)
        # the fusion runs at half the luma resolution, so it is kept narrow (n/2): it is most of a P-frame's cost
        f = arch.n // 2
        self.g_s = _synthesis(arch, f)
        self.fuse = nn.Sequential(
            nn.Conv2d(f + PLANES, f, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(f, PLANES, 3, padding=1)
        )
        self.entropy = Hyperprior(arch)

    def analyse(self, x: Tensor, prediction: Tensor) -> Tensor:
        return self.g_a(torch.cat([x, prediction], dim=1))

    def synthesise(self, latents: Tensor, prediction: Tensor) -> Tensor:
        return prediction + self.fuse(torch.cat([self.g_s(latents), prediction], dim=1))

    def forward(self, x: Tensor, prediction: Tensor, quality: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training: (reconstruction, likelihoods of y, likelihoods of z)."""
        latents, y_likelihoods, z_likelihoods = self.entropy(self.analyse(x, prediction), quality)
        return self.synthesise(latents, prediction), y_likelihoods, z_likelihoods


class VideoNet(nn.Module):
    """The whole codec: an I-frame network and a P-frame network, in one weights file."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.intra = IntraNet(arch)
        self.inter = InterNet(arch)


def load_network(state: Mapping[str, Tensor], record: Mapping[str, Any]) -> VideoNet:
    """The network of a weights file's tensors and training record, in eval mode, gradients off."""
    net = VideoNet(Architecture(n=record["n"], m=record["m"], qualities=record["qualities"]))
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def pack_yuv420(y: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """(B,H,W), (B,H/2,W/2) x2 in [0,1] -> (B,6,H/2,W/2)."""
    return torch.cat([F.pixel_unshuffle(y[:, None], 2), u[:, None], v[:, None]], dim=1)


def unpack_yuv420(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The inverse of pack_yuv420."""
    return F.pixel_shuffle(x[:, :4], 2)[:, 0], x[:, 4], x[:, 5]


def weighted_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """MSE with the PSNR-YUV plane weights, per image; x in packed layout."""
    y_err = ((x_hat[:, :4] - x[:, :4]) ** 2).mean(dim=(1, 2, 3))
    u_err = ((x_hat[:, 4] - x[:, 4]) ** 2).mean(dim=(1, 2))
    v_err = ((x_hat[:, 5] - x[:, 5]) ** 2).mean(dim=(1, 2))
    wy, wu, wv = YUV_WEIGHTS
    return wy * y_err + wu * u_err + wv * v_err


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

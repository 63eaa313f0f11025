"""The learned codec's networks, in plain torch, coding yuv420p directly: a scale-hyperprior autoencoder
(Ballé et al. 2018) for I-frames, and a motion-compensated conditional one for P-frames.

The luma plane is folded 2x2 into four channels (pixel-unshuffle) and stacked with the two
chroma planes, so a 4:2:0 frame of W x H enters the network as 6 x H/2 x W/2 with no colour
conversion. The latents `y` sit at 1/8 of the luma size (M = 96 per position: as many as the
samples of an 8x8 block and its chroma), the hyper-latents `z` at 1/32.

Each transform is a learned linear block transform plus a learned nonlinear branch (two strided
convolutions with GDN). The linear part starts as the orthonormal DCT (8x8 luma, 4x4 chroma) and
the branch's last layer at zero, so training starts from a working transform codec and learns
what improves on it, instead of from noise: what makes the networks trainable on two CPU cores.
A P-frame's linear path codes the residual from its prediction; its synthesis adds a learned
correction, fused with the prediction, to prediction + residual.

Training replaces rounding by additive uniform noise (Ballé 2017); inference rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

SCALE_BOUND = 0.11  # the smallest Gaussian scale, as in the literature
LIKELIHOOD_BOUND = 1e-9
PLANES = 6  # 4 folded luma + U + V
LATENT_STRIDE = 8  # luma samples per latent position
HYPER_STRIDE = 32  # luma samples per hyper-latent position
ALIGN = HYPER_STRIDE  # frames are padded to a multiple of this many luma samples
FOLD = LATENT_STRIDE // 2  # packed samples per latent position, each way
LATENTS = PLANES * FOLD * FOLD  # M: one latent per sample of an 8x8 luma block and its chroma
LUMA_LATENTS = 4 * FOLD * FOLD  # the first 64 latents transform luma, the rest chroma
# Rate-distortion trade-off per quality level, 1 (fewest bits) first: loss = lambda * 255^2 * MSE_yuv + bpp.
# Log-spaced (x2.09): at the start of training (the DCT and the gains below) they code BBB at about 28 to 38 dB.
LAMBDAS = (0.002, 0.0042, 0.0088, 0.0183, 0.0383, 0.08)
# Distortion weights of (Y, U, V) in the training loss, the PSNR-YUV weighting (6Y+U+V)/8.
YUV_WEIGHTS = (6 / 8, 1 / 8, 1 / 8)
RECORD_KEY = "codeclab"  # the safetensors metadata entry holding the architecture and training record (JSON)


@dataclass(frozen=True)
class Architecture:
    """The nonlinear branches' and hyper-transforms' width N, the hyper-latents' channels, and the quality levels.
    The latents' width is fixed at LATENTS by the block transform."""

    n: int = 64
    hyper: int = 16  # z at 1/32 of the luma size: 16 channels make 1/64 of a symbol per pixel
    qualities: int = len(LAMBDAS)


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


def dct_basis(size: int) -> Tensor:
    """The orthonormal DCT-II matrix, rows = frequencies."""
    k = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * size)) * math.sqrt(2 / size)
    basis[0] /= math.sqrt(2)
    return basis


@cache  # four transforms start from it each time a network is built; callers copy it, never change it
def block_dct() -> Tensor:
    """The (M, PLANES, FOLD, FOLD) weight of a stride-FOLD convolution on packed planes that is the orthonormal
    8x8 DCT of each luma block (64 outputs) and the 4x4 DCT of each chroma block (16 + 16).

    Packed luma plane 2*dy + dx holds luma sample (2i + dy, 2j + dx) of a block at packed offset (i, j)."""
    luma, chroma = dct_basis(2 * FOLD), dct_basis(FOLD)
    weight = torch.zeros(LATENTS, PLANES, FOLD, FOLD, dtype=torch.float64)
    for u in range(2 * FOLD):
        for v in range(2 * FOLD):
            for dy in range(2):
                for dx in range(2):
                    rows, cols = luma[u, dy::2], luma[v, dx::2]
                    weight[u * 2 * FOLD + v, 2 * dy + dx] = rows[:, None] * cols[None]
    for plane, first in ((4, LUMA_LATENTS), (5, LUMA_LATENTS + FOLD * FOLD)):
        for u in range(FOLD):
            for v in range(FOLD):
                weight[first + u * FOLD + v, plane] = chroma[u][:, None] * chroma[v][None]
    return weight.float()


def _start_as(layer: nn.Conv2d | nn.ConvTranspose2d, weight: Tensor | None) -> None:
    """Set the layer's weight to `weight` (None: zero) and its bias to zero."""
    assert layer.bias is not None
    with torch.no_grad():
        layer.weight.copy_(weight if weight is not None else torch.zeros_like(layer.weight))
        layer.bias.zero_()


def _zero_last(layers: nn.Sequential) -> nn.Sequential:
    """A branch whose last layer starts at zero: it adds nothing until training finds what to add."""
    last = layers[-1]
    assert isinstance(last, nn.Conv2d | nn.ConvTranspose2d)
    _start_as(last, None)
    return layers


class Analysis(nn.Module):
    """g_a: the block transform of `base` (the frame, or its residual from the prediction) plus a nonlinear
    branch (two 5x5 stride-2 convolutions with GDN) on the `planes` it is given."""

    def __init__(self, planes: int, arch: Architecture) -> None:
        super().__init__()
        self.linear = nn.Conv2d(PLANES, LATENTS, FOLD, stride=FOLD)
        _start_as(self.linear, block_dct())
        self.branch = _zero_last(nn.Sequential(_conv(planes, arch.n), GDN(arch.n), _conv(arch.n, LATENTS)))

    def forward(self, base: Tensor, inputs: Tensor) -> Tensor:
        return self.linear(base) + self.branch(inputs)


class Synthesis(nn.Module):
    """g_s: the inverse block transform of the latents (starting as the DCT's transpose) and a nonlinear branch
    (two stride-2 transposed convolutions with inverse GDN) to `planes` features at half the luma size."""

    def __init__(self, arch: Architecture, planes: int) -> None:
        super().__init__()
        self.linear = nn.ConvTranspose2d(LATENTS, PLANES, FOLD, stride=FOLD)
        _start_as(self.linear, block_dct())
        self.branch = _zero_last(
            nn.Sequential(_deconv(LATENTS, arch.n), GDN(arch.n, inverse=True), _deconv(arch.n, planes))
        )

    def forward(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """(the linear reconstruction, the branch's features)."""
        return self.linear(latents), self.branch(latents)


def quantise_(x_hat: Tensor) -> Tensor:
    """A network's output as a decoder's 8-bit samples: clamped to [0, 1], scaled and rounded, in place."""
    return x_hat.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def initial_log_gains(qualities: int) -> Tensor:
    """(qualities, LATENTS): each level's starting gains, the high-rate optimum of an orthonormal transform.

    Minimising lambda * 255^2 * w * step^2 / 12 - log2(step) per coefficient gives
    step^2 = 6 / (lambda * 255^2 * w * ln 2), with w the coefficient's weight in the loss (luma 6/8, a chroma
    coefficient (1/8) / (1/4) = 1/2); the gain is 1 / step. The levels take LAMBDAS' range, log-spaced."""
    lambdas = torch.logspace(math.log10(LAMBDAS[0]), math.log10(LAMBDAS[-1]), qualities, dtype=torch.float64)
    weights = torch.full((LATENTS,), 0.5, dtype=torch.float64)
    weights[:LUMA_LATENTS] = YUV_WEIGHTS[0]
    steps_squared = 6 / (lambdas[:, None] * 255**2 * weights[None] * math.log(2))
    return (-0.5 * steps_squared.log()).float()


class Hyperprior(nn.Module):
    """The entropy model both networks share the shape of: gains per quality, h_a, h_s and the prior on z.

    Quality q (0-based here) scales the latents by its gain before rounding (Cui et al. 2021's gain units),
    so one network covers every rate point; the scales h_s predicts are multiplied by the same gain.
    """

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        n, m, k = arch.n, LATENTS, arch.hyper
        self.h_a = nn.Sequential(_conv(m, n, 3, 1), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, k))
        self.h_s = nn.Sequential(_deconv(k, n), nn.ReLU(), _deconv(n, n), nn.ReLU(), _conv(n, m, 3, 1), nn.ReLU())
        self.prior = FactorizedPrior(k)
        log_gain = initial_log_gains(arch.qualities)
        self.log_gain = nn.Parameter(log_gain.clone())
        self.log_inverse_gain = nn.Parameter(-log_gain)

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
    """An I-frame: the image alone through g_a and g_s (Ballé 2018's scale hyperprior), centred on mid-grey so
    the block transform's DC coefficients start near zero."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.g_a = Analysis(PLANES, arch)
        self.g_s = Synthesis(arch, PLANES)
        self.entropy = Hyperprior(arch)

    def analyse(self, x: Tensor) -> Tensor:
        centred = x - 0.5
        return self.g_a(centred, centred)

    def synthesise(self, latents: Tensor) -> Tensor:
        linear, branch = self.g_s(latents)
        return linear + branch + 0.5

    def forward(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training: (reconstruction, likelihoods of y, likelihoods of z)."""
        latents, y_likelihoods, z_likelihoods = self.entropy(self.analyse(x), quality)
        return self.synthesise(latents), y_likelihoods, z_likelihoods


class InterNet(nn.Module):
    """A P-frame, coded with its motion-compensated prediction.

    The analysis transforms the residual from the prediction (linear path) and sees the frame and the
    prediction together (nonlinear branch). The synthesis adds the decoded residual to the prediction, plus a
    correction fused from the decoded features, the prediction and that residual at half the luma size. So a
    perfect prediction costs almost nothing, and each frame's error is the quantisation of its own residual,
    not the sum of its references'.
    """

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.g_a = Analysis(2 * PLANES, arch)
        # the fusion runs at half the luma resolution, so it is kept narrow (n/2)
        f = arch.n // 2
        self.g_s = Synthesis(arch, f)
        self.fuse = _zero_last(
            nn.Sequential(
                nn.Conv2d(f + 2 * PLANES, f, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(f, PLANES, 3, padding=1)
            )
        )
        self.entropy = Hyperprior(arch)

    def analyse(self, x: Tensor, prediction: Tensor) -> Tensor:
        return self.g_a(x - prediction, torch.cat([x, prediction], dim=1))

    def synthesise(self, latents: Tensor, prediction: Tensor) -> Tensor:
        residual, features = self.g_s(latents)
        return prediction + residual + self.fuse(torch.cat([features, prediction, residual], dim=1))

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
    net = VideoNet(Architecture(n=record["n"], hyper=record["hyper"], qualities=record["qualities"]))
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

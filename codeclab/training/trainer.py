"""Train one quality level of the learned codec: seeded, logged, and written as safetensors."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from codeclab.training.data import EVAL_SOURCES, PATCH, TRAIN_SOURCES, PatchSampler, load_training_videos
from codeclab.worker.codecs.learned.model import Architecture, ScaleHyperprior, resolve_device, weighted_mse
from codeclab.worker.codecs.learned.weights import LAMBDAS, save_model


@dataclass(frozen=True)
class TrainConfig:
    quality: int
    steps: int = 4000
    batch: int = 8
    learning_rate: float = 5e-4
    seed: int = 20261128
    device: str = "auto"
    threads: int = 2
    arch: Architecture = field(default_factory=Architecture)


@dataclass(frozen=True)
class StepReport:
    step: int
    loss: float
    bpp: float
    psnr: float


def learning_rate(config: TrainConfig, step: int) -> float:
    """Constant, then a cosine decay to a tenth over the last 30% of the steps."""
    start = int(config.steps * 0.7)
    if step < start:
        return config.learning_rate
    progress = (step - start) / max(1, config.steps - start)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def rd_loss(net: ScaleHyperprior, x: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, bpp, mse) for a packed batch; bpp counts bits per luma sample."""
    x_hat, y_likelihoods, z_likelihoods = net(x)
    luma_samples = x.shape[0] * x.shape[2] * x.shape[3] * 4
    bits = -(torch.log2(y_likelihoods).sum() + torch.log2(z_likelihoods).sum())
    bpp = bits / luma_samples
    mse = weighted_mse(x_hat, x).mean()
    return lam * 255**2 * mse + bpp, bpp, mse


def train(config: TrainConfig, out: Path, on_step: Callable[[StepReport], None]) -> Path:
    """Train from scratch with the pinned seed and write `out`; returns its path."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    sampler = PatchSampler(load_training_videos(), seed=config.seed)
    net = ScaleHyperprior(config.arch).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    lam = LAMBDAS[config.quality]
    started = time.monotonic()
    for step in range(1, config.steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, step)
        loss, bpp, mse = rd_loss(net, sampler.batch(config.batch).to(device), lam)
        optimiser.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):  # a rare diverged batch is skipped rather than poisoning Adam's moments
            continue
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()
        psnr = 10 * math.log10(1 / max(mse.item(), 1e-12))
        on_step(StepReport(step, loss.item(), bpp.item(), psnr))
    metadata = {
        "lambda": lam,
        "steps": config.steps,
        "batch": config.batch,
        "patch": PATCH,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "device": str(device),
        "threads": config.threads,
        "train_seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "train_sources": list(TRAIN_SOURCES),
        "eval_sources": list(EVAL_SOURCES),
        "colour": "yuv420p coded directly (luma pixel-unshuffled 2x2), no RGB conversion",
    }
    save_model(net.cpu(), config.quality, metadata, out)
    return out

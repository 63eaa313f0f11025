"""Train the learned codec's weights: one variable-rate network pair, seeded, resumable, and recorded.

Every step trains both networks: the I-frame network on a batch of crops, the P-frame network on a
batch of (frame, prediction) crops, each crop at a quality level drawn for it, with that level's
lambda in its loss. A P crop's prediction comes from the previous frame as the I-network, at that
step, reconstructs it: what a decoder would hold, not an original.

A checkpoint beside the weights holds the networks, Adam's moments and both random generators, so
a run stopped (Ctrl-C, or killed) resumes where its last checkpoint left it, and a resumed run
writes the same weights as an unbroken one with the same seed, steps and threads. Each sitting
appends its steps and wall time to the record the weights carry.
"""

from __future__ import annotations

import fcntl
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from codeclab.training.data import (
    EVAL_SOURCES,
    INTER_SOURCES,
    MARGIN,
    PATCH,
    TRAIN_SOURCES,
    PatchSampler,
    limited,
    load_training_data,
    predictions,
)
from codeclab.worker.codecs.learned.model import LAMBDAS, Architecture, VideoNet, resolve_device, weighted_mse
from codeclab.worker.codecs.learned.weights import save_model

CHECKPOINT_EVERY = 100  # steps; a kill loses at most this many
CHECKPOINT_KEY = "codeclab-checkpoint"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    batch: int = 8
    learning_rate: float = 5e-4
    seed: int = 20261130
    device: str = "auto"
    threads: int = 2
    max_frames: int | None = None  # of each training source: a quick trial; the shipped weights use all
    arch: Architecture = field(default_factory=Architecture)

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint."""
        return {
            "batch": self.batch, "learning_rate": self.learning_rate, "seed": self.seed,
            "max_frames": self.max_frames, **asdict(self.arch),
        }  # fmt: skip


@dataclass(frozen=True)
class StepReport:
    step: int
    intra_bpp: float
    intra_psnr: float
    inter_bpp: float
    inter_psnr: float


class Sitting(TypedDict):
    """One run of `codeclab train`: which steps it did, how long it took, and on what."""

    first_step: int
    last_step: int
    seconds: float
    device: str
    threads: int
    torch: str


class CheckpointMismatch(ValueError):
    """The checkpoint was written by a run with another seed, batch, learning rate or architecture, or another
    run is training with it right now."""


def learning_rate(config: TrainConfig, step: int) -> float:
    """Constant, then a cosine decay to a tenth over the last 30% of the steps."""
    start = int(config.steps * 0.7)
    if step < start:
        return config.learning_rate
    progress = (step - start) / max(1, config.steps - start)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def rd_loss(
    x_hat: torch.Tensor, x: torch.Tensor, likelihoods: tuple[torch.Tensor, torch.Tensor], quality: torch.Tensor
) -> tuple[torch.Tensor, float, float]:
    """(loss, mean bpp, PSNR of the mean weighted MSE) for a packed batch; bpp counts bits per luma sample."""
    luma_samples = x.shape[2] * x.shape[3] * 4
    bits = -(torch.log2(likelihoods[0]).sum(dim=(1, 2, 3)) + torch.log2(likelihoods[1]).sum(dim=(1, 2, 3)))
    bpp = bits / luma_samples
    mse = weighted_mse(x_hat, x)
    lam = torch.tensor(LAMBDAS, dtype=mse.dtype, device=mse.device)[quality]
    loss = (lam * 255**2 * mse + bpp).mean()
    return loss, bpp.mean().item(), 10 * math.log10(1 / max(mse.mean().item(), 1e-12))


@dataclass
class _State:
    net: VideoNet
    optimiser: torch.optim.Adam
    step: int
    sittings: list[Sitting]


def train(
    config: TrainConfig,
    out: Path,
    checkpoint: Path,
    on_step: Callable[[StepReport], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> Path | None:
    """Train to config.steps, resuming from `checkpoint` if it exists; write `out` at the end.

    Returns `out`, or None when should_stop() asked to stop first (the checkpoint then holds the last step)."""
    with _only_run(checkpoint):
        return _train(config, out, checkpoint, on_step, should_stop)


@contextmanager
def _only_run(checkpoint: Path) -> Iterator[None]:
    """Hold the checkpoint's lock for the whole run: two runs on one checkpoint would overwrite each other's
    state (and weights) step by step. The kernel drops the lock when the process dies, even by kill -9."""
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with checkpoint.with_name(f".{checkpoint.name}.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointMismatch(
                f"{checkpoint} is in use by another training run; wait for it, or give another --checkpoint"
            ) from None
        yield


def _train(
    config: TrainConfig,
    out: Path,
    checkpoint: Path,
    on_step: Callable[[StepReport], None],
    should_stop: Callable[[], bool],
) -> Path | None:
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    meta = _checkpoint_meta(checkpoint, config) if checkpoint.exists() else None  # refused before the data loads
    sampler = PatchSampler(*load_training_data(config.max_frames), seed=config.seed)
    torch.manual_seed(config.seed)
    state = _fresh(config, device)
    if meta is not None:
        _restore(checkpoint, meta, state, sampler, device)
    first_step, started = state.step + 1, time.monotonic()

    def sitting() -> Sitting:
        return {
            "first_step": first_step, "last_step": state.step, "seconds": round(time.monotonic() - started, 1),
            "device": str(device), "threads": config.threads, "torch": torch.__version__,
        }  # fmt: skip

    while state.step < config.steps:
        if should_stop():
            _save_checkpoint(checkpoint, config, state, sampler, [*state.sittings, sitting()])
            return None
        state.step += 1
        report = _step(config, state, sampler, device)
        if report is not None:
            on_step(report)
        if state.step % CHECKPOINT_EVERY == 0:
            _save_checkpoint(checkpoint, config, state, sampler, [*state.sittings, sitting()])
    sittings = [*state.sittings, sitting()] if state.step >= first_step else state.sittings
    _save_checkpoint(checkpoint, config, state, sampler, sittings)
    save_model(state.net.cpu(), _record(config, sittings), out)
    return out


def _fresh(config: TrainConfig, device: torch.device) -> _State:
    net = VideoNet(config.arch).to(device)
    return _State(net, torch.optim.Adam(net.parameters(), lr=config.learning_rate), 0, [])


def _step(config: TrainConfig, state: _State, sampler: PatchSampler, device: torch.device) -> StepReport | None:
    for group in state.optimiser.param_groups:
        group["lr"] = learning_rate(config, state.step)
    levels = config.arch.qualities
    intra_q = sampler.qualities(config.batch, levels).to(device)
    x = sampler.batch(config.batch).to(device)
    x_hat, *intra_lik = state.net.intra(x, intra_q)
    intra_loss, intra_bpp, intra_psnr = rd_loss(x_hat, x, (intra_lik[0], intra_lik[1]), intra_q)
    inter_q = sampler.qualities(config.batch, levels).to(device)
    pairs = sampler.inter_batch(config.batch)
    with torch.no_grad():  # the reference as this step's I-network reconstructs it, at the crop's quality
        reference_hat = state.net.intra(pairs.references.to(device), inter_q)[0]
    current, prediction = pairs.current.to(device), predictions(reference_hat, pairs.vectors)
    p_hat, *inter_lik = state.net.inter(current, prediction, inter_q)
    inter_loss, inter_bpp, inter_psnr = rd_loss(p_hat, current, (inter_lik[0], inter_lik[1]), inter_q)
    loss = intra_loss + inter_loss
    state.optimiser.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):  # a rare diverged batch is skipped rather than poisoning Adam's moments
        return None
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.net.parameters(), 1.0)
    state.optimiser.step()
    return StepReport(state.step, intra_bpp, intra_psnr, inter_bpp, inter_psnr)


def _save_checkpoint(
    path: Path, config: TrainConfig, state: _State, sampler: PatchSampler, sittings: list[Sitting]
) -> None:
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in state.net.state_dict().items()}
    for index, moments in state.optimiser.state_dict()["state"].items():
        for name, value in moments.items():
            tensors[f"adam.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "identity": config.identity(),
        "steps": config.steps,
        "step": state.step,
        "numpy_rng": sampler.rng.bit_generator.state,
        "sittings": sittings,
    }
    partial = path.with_name(f".{path.name}.partial")  # a kill mid-write leaves the last whole checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(partial), metadata={CHECKPOINT_KEY: json.dumps(meta, sort_keys=True)})
    partial.replace(path)


def _checkpoint_meta(path: Path, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint's record, if a run with this config may resume it; CheckpointMismatch otherwise."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta: dict[str, Any] = json.loads((fh.metadata() or {})[CHECKPOINT_KEY])
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise CheckpointMismatch(f"{path} is not a training checkpoint ({type(exc).__name__}: {exc})") from None
    if meta["identity"] != config.identity():
        raise CheckpointMismatch(
            f"{path} was written with {meta['identity']}, and this run has {config.identity()}; "
            "resume with the same settings, or give another --checkpoint to start afresh"
        )
    return meta


def _restore(path: Path, meta: dict[str, Any], state: _State, sampler: PatchSampler, device: torch.device) -> None:
    tensors = load_file(str(path))
    try:
        state.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    except RuntimeError as exc:  # the same settings, but another version of the networks wrote it
        raise CheckpointMismatch(f"{path} holds networks of another shape: {str(exc).splitlines()[0]}") from None
    optimiser = state.optimiser.state_dict()
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("adam."):
            _, index, name = key.split(".")
            moments.setdefault(int(index), {})[name] = value.to(device) if name != "step" else value
    optimiser["state"] = moments
    state.optimiser.load_state_dict(optimiser)
    torch.set_rng_state(tensors["rng.torch"])
    sampler.rng.bit_generator.state = meta["numpy_rng"]
    state.step, state.sittings = meta["step"], meta["sittings"]


def _record(config: TrainConfig, sittings: list[Sitting]) -> dict[str, Any]:
    return {
        "lambdas": list(LAMBDAS),
        "steps": config.steps,
        "batch": config.batch,
        "patch": PATCH,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "threads": config.threads,
        "max_frames": config.max_frames,
        "sittings": sittings,
        "device": sittings[-1]["device"] if sittings else str(resolve_device(config.device)),
        "train_seconds": round(sum(s["seconds"] for s in sittings), 1),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "train_sources": list(limited(TRAIN_SOURCES, config.max_frames)),
        "inter_sources": list(limited(INTER_SOURCES, config.max_frames)),
        "inter_references": (
            f"the previous frame, with a {MARGIN}-sample margin, as the I-network reconstructs it at that step "
            "and at the crop's quality; vectors searched on the originals"
        ),
        "eval_sources": list(EVAL_SOURCES),
        "colour": "yuv420p coded directly (luma pixel-unshuffled 2x2), no RGB conversion",
    }

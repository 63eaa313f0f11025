"""The shipped weights: one safetensors file holding both networks and every quality level, read with
safetensors only (never pickle)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from codeclab.worker.codecs.learned.model import RECORD_KEY, VideoNet, load_network
from codeclab.worker.errors import InvalidInput
from codeclab.worker.hashing import sha256_file

WEIGHTS_DIR = Path(__file__).parent / "weights"
BUILTIN = WEIGHTS_DIR / "video.safetensors"
QUALITIES = 6  # the shipped file's levels; a file's own record says how many it has


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode, with its training record and the hash of the exact weights file."""

    net: VideoNet
    sha256: str
    metadata: dict[str, Any]

    @property
    def qualities(self) -> int:
        return self.net.arch.qualities

    @property
    def fingerprint(self) -> bytes:
        """The first 4 bytes of the file's sha256: the bitstream carries them."""
        return bytes.fromhex(self.sha256)[:4]


def builtin_weights() -> Path:
    """The shipped weights file."""
    if not BUILTIN.is_file():
        raise InvalidInput(
            f"$.codec.params: the shipped weights {BUILTIN} are missing from this install; train your own with "
            "`codeclab train --out FILE` and give the file as codec.params.weights"
        )
    return BUILTIN


def save_model(net: VideoNet, metadata: dict[str, Any], path: Path) -> None:
    """Write the float32 state dict with the architecture and training record as metadata."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    record = {**asdict(net.arch), **metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # an interrupted write leaves no half file under the name
    save_file(state, str(partial), metadata={RECORD_KEY: json.dumps(record, sort_keys=True)})
    partial.replace(path)


@cache
def load_model(path: Path) -> LoadedModel:
    """The model in a weights file, on the CPU; cached per process (a fetched file is named by its hash)."""
    metadata = read_record(path)
    try:
        net = load_network(load_file(str(path)), metadata)
    except RuntimeError as exc:  # tensors of another architecture, e.g. the 1/16-latent network before ADR 0024
        raise _another_version(path, f"its networks have another shape ({str(exc).splitlines()[0]})") from None
    digest = sha256_file(path)  # in blocks: a checkpoint may be hundreds of MB
    return LoadedModel(net, digest, metadata)


def read_record(path: Path) -> dict[str, Any]:
    """The architecture and training record a weights file carries; InvalidInput when it has none."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        record = json.loads(header[RECORD_KEY])
        if not isinstance(record, dict):
            raise ValueError("the record is not an object")
    except (OSError, SafetensorError, KeyError, ValueError, AttributeError) as exc:
        raise InvalidInput(
            f"{path} is not a weights file of the learned codec ({type(exc).__name__}: {exc}): it needs the "
            f"{RECORD_KEY!r} training record in its safetensors metadata, as `codeclab train --out FILE` writes"
        ) from None
    missing = [key for key in ("qualities", "n", "hyper") if not isinstance(record.get(key), int)]
    if missing:  # e.g. weights of the network before ADR 0024, whose record has no "hyper"
        raise _another_version(path, f"its record lacks {', '.join(missing)}")
    return record


def _another_version(path: Path, why: str) -> InvalidInput:
    return InvalidInput(
        f"{path} holds weights of another version of the learned codec: {why}; "
        "train weights for this version with `codeclab train --out FILE`"
    )

"""The built-in learned codec: a scale-hyperprior autoencoder, entropy-coded with constriction.

Container (little-endian): magic b"CLN1", quality u8, the weights' fingerprint (4 bytes of
their sha256), width u16, height u16, frame count u32, fps numerator u32 and denominator
u32; then per frame a u32 length and the frame's range-coded payload. Decoding needs that
file and the shipped weights, nothing else.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codeclab.experiments.result import CodecConditions
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.codecs.framing import read_payloads, write_payload
from codeclab.worker.errors import CodecFailure
from codeclab.worker.video import FrameCallback, Video, read_y4m

if TYPE_CHECKING:
    import torch

    from codeclab.worker.codecs.learned.frame_coder import FrameCoder
    from codeclab.worker.codecs.learned.weights import LoadedModel

# torch and the model modules are imported on first use, not here: every worker imports the codec registry,
# and torch alone adds about a second to the start of every job, whatever its codec.

MAGIC = b"CLN1"
_HEADER = struct.Struct("<4sB4sHHIII")


class LearnedCodec(Codec):
    name = "learned"
    summary = "built-in scale hyperprior (Ballé 2018) on yuv420p, plain torch + constriction, per frame"
    bitstream_suffix = ".cln"

    @property
    def device(self) -> str:  # type: ignore[override]
        return str(self._device)

    @cached_property
    def _device(self) -> torch.device:
        from codeclab.worker.codecs.learned.model import resolve_device

        return resolve_device(self.params["device"])

    @cached_property
    def _model(self) -> LoadedModel:
        from codeclab.worker.codecs.learned.weights import load_model

        return load_model(self.params["quality"])

    @cached_property
    def _coder(self) -> FrameCoder:
        import torch

        from codeclab.worker.codecs.learned.frame_coder import FrameCoder

        torch.set_num_threads(self.params["threads"])
        return FrameCoder(self._model, self._device)

    def prepare(self) -> None:
        _ = self._coder  # weights, the float64 hyper-synthesis and the probability tables

    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        video = read_y4m(reference)
        fps = video.fps
        header = _HEADER.pack(
            MAGIC, self.params["quality"], self._model.fingerprint, video.width, video.height,
            video.frames, fps.numerator, fps.denominator,
        )  # fmt: skip
        with bitstream.open("wb") as fh:
            fh.write(header)
            for index in range(video.frames):
                payload, _ = self._coder.encode(video.frame_planes(index))
                write_payload(fh, payload)
                on_frame(index + 1)

    def decode(self, bitstream: Path, header: StreamHeader, on_frame: FrameCallback) -> Video:
        data = bitstream.read_bytes()
        try:
            magic, quality, fingerprint, width, height, frames, num, den = _HEADER.unpack_from(data)
            payloads = read_payloads(data, _HEADER.size, frames)
        except (struct.error, ValueError):
            raise CodecFailure(f"learned: {bitstream.name} is truncated or damaged") from None
        if magic != MAGIC:
            raise CodecFailure(f"learned: {bitstream.name} is not a codeclab learned-codec stream")
        self._check_weights(quality, fingerprint)
        planes = []
        for index, payload in enumerate(payloads):
            try:
                planes.append(self._coder.decode(bytes(payload), width, height))
            except (AssertionError, ValueError) as exc:  # constriction reports bad data with AssertionError
                raise CodecFailure(f"learned: frame {index} of {bitstream.name} does not decode: {exc}") from None
            on_frame(index + 1)
        y, u, v = (np.stack(p) for p in zip(*planes, strict=True))
        return Video(y, u, v, Fraction(num, den))

    def _check_weights(self, quality: int, fingerprint: bytes) -> None:
        if quality != self.params["quality"] or fingerprint != self._model.fingerprint:
            raise CodecFailure(
                f"learned: the stream was made by quality {quality} weights {fingerprint.hex()}, but this "
                f"decoder has quality {self.params['quality']} weights {self._model.fingerprint.hex()}"
            )

    def conditions(self) -> CodecConditions:
        from codeclab.worker.codecs.learned.entropy import PRECISION, SCALE_TABLE, TAIL_MASS

        meta = self._model.metadata
        return {
            "codec": self.name,
            "implementation": (
                f"codeclab scale hyperprior, torch {version('torch')}, constriction {version('constriction')}"
            ),
            "params": self.params,
            "device": self.device,
            "weights": {
                "quality": self.params["quality"],
                "fingerprint": self._model.fingerprint.hex(),
                "architecture": {"N": meta["n"], "M": meta["m"]},
                "training": {k: meta[k] for k in ("lambda", "steps", "batch", "seed", "device", "train_seconds")},
            },
            "colour_conversion": meta["colour"],
            "entropy_coding": (
                f"constriction range coder; y: zero-mean Gaussian snapped to {len(SCALE_TABLE)} log-spaced scales "
                f"{SCALE_TABLE[0]:.2f}..{SCALE_TABLE[-1]:.0f}; z: learned factorized prior; {PRECISION}-bit tables, "
                f"tail mass {TAIL_MASS:g} escaped with Exp-Golomb; table indexes from float64 hyper-synthesis on CPU"
            ),
            "padding": "edge-replicated to a multiple of 64 luma samples, cropped after decoding",
            "bitstream_format": "codeclab learned stream CLN1 (25 bytes + 4 per frame)",
        }

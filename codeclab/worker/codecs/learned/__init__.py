"""The built-in learned codec: a scale-hyperprior autoencoder, entropy-coded with constriction.

The container is CLN1 (stream.py). Decoding needs that file and the same weights, nothing else.
"""

from __future__ import annotations

from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from codeclab.experiments.result import CodecConditions
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.codecs.framing import write_payload
from codeclab.worker.codecs.learned.stream import StreamInfo, read_stream
from codeclab.worker.errors import CodecFailure, InvalidSpec
from codeclab.worker.video import FrameCallback, FrameFile, Y4MWriter

if TYPE_CHECKING:
    import torch

    from codeclab.worker.codecs.learned.frame_coder import FrameCoder
    from codeclab.worker.codecs.learned.weights import LoadedModel

# torch and the model modules are imported on first use, not here: every worker imports the codec registry,
# and torch alone adds about a second to the start of every job, whatever its codec.


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
    def _weights_file(self) -> Path:
        """The shipped file for `quality`, or the spec's own weights, fetched and checked against their sha256."""
        from codeclab.worker.codecs.learned.weights import builtin_weights

        given = self.params.get("weights")
        if given is None:
            return builtin_weights(self.params["quality"])
        from codeclab.worker.packages.fetch import fetch_checked
        from codeclab.worker.packages.unpack import default_cache_dir

        return fetch_checked(given["uri"], given["sha256"], "$.codec.params.weights.uri", default_cache_dir())

    @cached_property
    def _model(self) -> LoadedModel:
        from codeclab.worker.codecs.learned.weights import load_model

        model = load_model(self._weights_file)
        if model.quality != self.params["quality"]:
            raise InvalidSpec(
                f"$.codec.params.quality: the weights in {self.params['weights']['uri']} were trained for quality "
                f"{model.quality} (lambda {model.metadata.get('lambda')}), and the spec says {self.params['quality']}; "
                f"set quality to {model.quality}"
            )
        return model

    @cached_property
    def _coder(self) -> FrameCoder:
        import torch

        from codeclab.worker.codecs.learned.frame_coder import FrameCoder

        torch.set_num_threads(self.params["threads"])
        return FrameCoder(self._model.net, self._device)

    def prepare(self) -> None:
        _ = self._coder  # weights, the float64 hyper-synthesis and the probability tables

    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        video = FrameFile.y4m(reference)
        model = self._model
        info = StreamInfo(model.quality, model.fingerprint, video.width, video.height, video.frames, video.fps)
        with bitstream.open("wb") as fh:
            fh.write(info.pack())
            for index in range(video.frames):
                payload = self._coder.encode(video.frame_planes(index))
                write_payload(fh, payload)
                on_frame(index + 1)

    def decode_to(self, bitstream: Path, header: StreamHeader, out: Path, on_frame: FrameCallback) -> None:
        try:
            info, payloads = read_stream(bitstream.read_bytes())
            info.check_weights(self._model.quality, self._model.fingerprint)
        except ValueError as exc:
            raise CodecFailure(f"learned: {bitstream.name}: {exc}") from None
        with Y4MWriter(out, info.width, info.height, info.fps, "yuv420p") as decoded:
            for index, payload in enumerate(payloads):
                try:
                    planes = self._coder.decode(bytes(payload), info.width, info.height)
                except (AssertionError, ValueError) as exc:  # constriction reports bad data with AssertionError
                    raise CodecFailure(f"learned: frame {index} of {bitstream.name} does not decode: {exc}") from None
                decoded.write(planes)
                on_frame(index + 1)

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
                "source": self.params["weights"]["uri"] if "weights" in self.params else "built-in",
                "sha256": self._model.sha256,
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

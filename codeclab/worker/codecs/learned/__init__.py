"""The built-in learned video codec: conditional P-frames on block motion, I-frames from a scale hyperprior.

The container is CLN2 (stream.py). Decoding needs that file and the same weights, nothing else.
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
    summary = (
        "built-in learned video codec on yuv420p: P-frames coded conditioned on block-motion prediction, "
        "I-frames by a scale hyperprior (Ballé 2018); plain torch + constriction"
    )
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
            return builtin_weights()
        from codeclab.worker.packages.fetch import fetch_checked
        from codeclab.worker.packages.unpack import default_cache_dir

        return fetch_checked(given["uri"], given["sha256"], "$.codec.params.weights.uri", default_cache_dir())

    @cached_property
    def _model(self) -> LoadedModel:
        from codeclab.worker.codecs.learned.weights import load_model

        model = load_model(self._weights_file)
        if self.params["quality"] > model.qualities:
            source = self.params["weights"]["uri"] if "weights" in self.params else "the shipped weights"
            raise InvalidSpec(
                f"$.codec.params.quality: {source} have quality levels 1 to {model.qualities}, and the spec says "
                f"{self.params['quality']}; choose one of those"
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
        import torch

        from codeclab.worker.codecs.learned.frame_coder import SequenceEncoder

        video = FrameFile.y4m(reference)
        quality, period, threads = self.params["quality"], self.params["intra_period"], self.params["threads"]
        fingerprint = self._model.fingerprint
        info = StreamInfo(quality, period, threads, fingerprint, video.width, video.height, video.frames, video.fps)
        sequence = SequenceEncoder(self._coder, quality, period)
        torch.set_num_threads(threads)  # the count the header records, whatever ran in this process before
        with bitstream.open("wb") as fh:
            fh.write(info.pack())
            for index in range(video.frames):
                write_payload(fh, sequence.encode(video.frame_planes(index)))
                on_frame(index + 1)

    def decode_to(self, bitstream: Path, header: StreamHeader, out: Path, on_frame: FrameCallback) -> None:
        import torch

        from codeclab.worker.codecs.learned.frame_coder import SequenceDecoder

        try:
            info, payloads = read_stream(bitstream.read_bytes())
            info.check_weights(self._model.fingerprint, self._model.qualities)
            _check_size(info, header)
        except ValueError as exc:
            raise CodecFailure(f"learned: {bitstream.name}: {exc}") from None
        sequence = SequenceDecoder(self._coder, info.quality, info.intra_period, info.width, info.height)
        torch.set_num_threads(info.threads)  # the encoder's, after _coder set the params' (see stream.py)
        with Y4MWriter(out, info.width, info.height, info.fps, "yuv420p") as decoded:
            for index, payload in enumerate(payloads):
                try:
                    planes = sequence.decode(bytes(payload))
                except (AssertionError, ValueError) as exc:  # constriction reports bad data with AssertionError
                    raise CodecFailure(f"learned: frame {index} of {bitstream.name} does not decode: {exc}") from None
                decoded.write(planes)
                on_frame(index + 1)

    def conditions(self) -> CodecConditions:
        from codeclab.worker.codecs.learned.entropy import PRECISION, SCALE_TABLE, TAIL_MASS
        from codeclab.worker.codecs.learned.model import ALIGN, HYPER_STRIDE, LATENT_STRIDE, LATENTS
        from codeclab.worker.codecs.learned.motion import BLOCK, SEARCH

        meta = self._model.metadata
        return {
            "codec": self.name,
            "implementation": (
                f"codeclab learned video codec, torch {version('torch')}, constriction {version('constriction')}"
            ),
            "params": self.params,
            "device": self.device,
            "weights": {
                "quality": self.params["quality"],
                "lambda": meta["lambdas"][self.params["quality"] - 1],
                "source": self.params["weights"]["uri"] if "weights" in self.params else "built-in",
                "sha256": self._model.sha256,
                "fingerprint": self._model.fingerprint.hex(),
                "architecture": {
                    "N": meta["n"],
                    "M": LATENTS,
                    "hyper_latents": meta["hyper"],
                    "qualities": meta["qualities"],
                    "transforms": (
                        f"a linear block transform (started as the 8x8/4x4 DCT) plus a nonlinear branch; latents at "
                        f"1/{LATENT_STRIDE}, hyper-latents at 1/{HYPER_STRIDE} of the luma size"
                    ),
                },
                "training": {k: meta[k] for k in ("steps", "batch", "seed", "device", "threads", "train_seconds")},
            },
            "temporal_coding": (
                f"intra period {self.params['intra_period']}; P-frames: one vector per {BLOCK}x{BLOCK} luma block "
                f"(half-pel, +-{SEARCH} samples, integer bilinear compensation), the residual from the prediction "
                "coded on the linear path plus a learned correction fused with it; the reference is the previous "
                "decoded frame"
            ),
            "colour_conversion": meta["colour"],
            "entropy_coding": (
                f"constriction range coder; y: zero-mean Gaussian snapped to {len(SCALE_TABLE)} log-spaced scales "
                f"{SCALE_TABLE[0]:.2f}..{SCALE_TABLE[-1]:.0f}; z: learned factorized prior; {PRECISION}-bit tables, "
                f"tail mass {TAIL_MASS:g} escaped with Exp-Golomb; table indexes from float64 hyper-synthesis on CPU"
            ),
            "padding": f"edge-replicated to a multiple of {ALIGN} luma samples, cropped after decoding",
            "bitstream_format": "codeclab learned stream CLN2 (28 bytes + 4 per frame)",
        }


def _check_size(info: StreamInfo, header: StreamHeader) -> None:
    """ValueError when the stream's size is not the clip's (a zero in the header: not known to the caller).

    A damaged header could otherwise ask the decoder for a frame of up to 65535x65535 before the range
    decoder finds its payloads short."""
    if header.width and (info.width, info.height) != (header.width, header.height):
        raise ValueError(f"the stream says {info.width}x{info.height}, and the clip is {header.width}x{header.height}")

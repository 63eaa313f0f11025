"""The one codec interface: encode a reference to a bitstream file, decode from that file alone."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from codeclab.experiments.result import CodecConditions
from codeclab.experiments.schema import CodecParams
from codeclab.worker.video import FrameCallback, FrameSource, Video, read_y4m


@dataclass(frozen=True)
class StreamHeader:
    """The public facts a decoder may know besides the bitstream itself."""

    width: int
    height: int
    frames: int
    fps: Fraction
    pix_fmt: str = "yuv420p"  # the reference's: the decoder returns frames at its bit depth

    @classmethod
    def of(cls, video: FrameSource) -> StreamHeader:
        return cls(video.width, video.height, video.frames, video.fps, video.pix_fmt)


class Codec(ABC):
    """A codec with resolved parameters (validated, defaults filled in)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    bitstream_suffix: ClassVar[str]
    device: ClassVar[str] = "cpu"
    # The reference pixel formats it codes as they are; any other is refused before encoding, never converted.
    pix_fmts: ClassVar[tuple[str, ...]] = ("yuv420p",)

    def __init__(self, params: CodecParams) -> None:
        self.params = params
        self.pix_fmt = "yuv420p"  # the reference's, once accept_reference() has taken it

    def protect_source(self, copies: Sequence[Path]) -> None:  # noqa: B027 (only sandboxed codecs need it)
        """Where copies of the source lie (the clip, the worker's folders): a sandboxed decoder must not read them."""

    def prepare(self) -> None:  # noqa: B027 (an optional hook: most codecs need no setup)
        """One-time setup (loading a model), run before the timed encode so fps measure the codec itself."""

    @abstractmethod
    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        """Encode the y4m `reference` into the file `bitstream`."""

    @abstractmethod
    def decode_to(self, bitstream: Path, header: StreamHeader, out: Path, on_frame: FrameCallback) -> None:
        """Decode `bitstream` alone (plus the public header) into the y4m file `out`, at the header's pix_fmt."""

    def decode(self, bitstream: Path, header: StreamHeader, on_frame: FrameCallback) -> Video:
        """decode_to(), read back into memory whole: for tests and tools; the worker reads `out` frame by frame."""
        with tempfile.TemporaryDirectory(prefix="codeclab-decoded-") as tmp:
            out = Path(tmp) / "decoded.y4m"
            self.decode_to(bitstream, header, out, on_frame)
            return read_y4m(out)

    @abstractmethod
    def conditions(self) -> CodecConditions:
        """Tool versions and exact settings, recorded next to every result."""

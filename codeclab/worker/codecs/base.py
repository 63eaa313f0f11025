"""The one codec interface: encode a reference to a bitstream file, decode from that file alone."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from codeclab.experiments.result import CodecConditions
from codeclab.experiments.schema import CodecParams
from codeclab.worker.video import FrameCallback, Video


@dataclass(frozen=True)
class StreamHeader:
    """The public facts a decoder may know besides the bitstream itself."""

    width: int
    height: int
    frames: int
    fps: Fraction

    @classmethod
    def of(cls, video: Video) -> StreamHeader:
        return cls(video.width, video.height, video.frames, video.fps)


class Codec(ABC):
    """A codec with resolved parameters (validated, defaults filled in)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    bitstream_suffix: ClassVar[str]
    device: ClassVar[str] = "cpu"

    def __init__(self, params: CodecParams) -> None:
        self.params = params

    def protect_source(self, copies: Sequence[Path]) -> None:  # noqa: B027 (only sandboxed codecs need it)
        """Where copies of the source lie (the clip, the worker's folders): a sandboxed decoder must not read them."""

    def prepare(self) -> None:  # noqa: B027 (an optional hook: most codecs need no setup)
        """One-time setup (loading a model), run before the timed encode so fps measure the codec itself."""

    @abstractmethod
    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        """Encode the y4m `reference` into the file `bitstream`."""

    @abstractmethod
    def decode(self, bitstream: Path, header: StreamHeader, on_frame: FrameCallback) -> Video:
        """Decode `bitstream` alone (plus the public header) into yuv420p frames."""

    @abstractmethod
    def conditions(self) -> CodecConditions:
        """Tool versions and exact settings, recorded next to every result."""

"""Per-frame image anchors (JPEG, WebP, AVIF) through OpenCV, in a tiny framed container.

Container (little-endian): magic b"CLF1", 4-byte codec tag, width u16, height u16,
frame count u32, fps numerator u32, fps denominator u32; then per frame a u32
length and the image file's bytes. Decoding needs that file and nothing else, and
the container's 24 + 4 bytes per frame are counted in the rate.
"""

from __future__ import annotations

import re
import struct
from abc import abstractmethod
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from codeclab.experiments.result import CodecConditions
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.codecs.framing import read_payloads, write_payload
from codeclab.worker.colour import RGB_CONVERSION, rgb_to_yuv420, yuv420_to_rgb
from codeclab.worker.errors import CodecFailure
from codeclab.worker.video import FrameCallback, FrameFile, Y4MWriter

MAGIC = b"CLF1"
_HEADER = struct.Struct("<4s4sHHIII")


class ImageCodec(Codec):
    """Codes each frame as an independent still image."""

    bitstream_suffix = ".clf"
    extension: ClassVar[str]
    build_info_key: ClassVar[str]  # the library's line in cv2.getBuildInformation()

    @abstractmethod
    def imwrite_params(self) -> list[int]:
        """cv2.imencode options for the configured quality."""

    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        import cv2  # imported on use: OpenCV costs about 0.25 s, which a job of another codec never needs

        video = FrameFile.y4m(reference)
        with bitstream.open("wb") as fh:
            fps = video.fps
            tag = self.name.encode("ascii")[:4].ljust(4, b"_")
            fh.write(
                _HEADER.pack(
                    MAGIC,
                    tag,
                    video.width,
                    video.height,
                    video.frames,
                    fps.numerator,
                    fps.denominator,
                )
            )
            for index in range(video.frames):
                image = yuv420_to_rgb(*video.frame_planes(index))
                ok, data = cv2.imencode(self.extension, image[..., ::-1], self.imwrite_params())
                if not ok:
                    raise CodecFailure(f"{self.name}: OpenCV could not encode frame {index}")
                write_payload(fh, data.tobytes())
                on_frame(index + 1)

    def decode_to(self, bitstream: Path, header: StreamHeader, out: Path, on_frame: FrameCallback) -> None:
        import cv2

        width, height, fps, payloads = self._unpack(bitstream)
        with Y4MWriter(out, width, height, fps, "yuv420p") as decoded:
            for index, payload in enumerate(payloads):
                image = cv2.imdecode(payload, cv2.IMREAD_COLOR)
                if image is None or image.shape[:2] != (height, width):
                    raise CodecFailure(f"{self.name}: frame {index} does not decode to {width}x{height}")
                decoded.write(rgb_to_yuv420(image[..., ::-1]))
                on_frame(index + 1)

    def _unpack(self, bitstream: Path) -> tuple[int, int, Fraction, list[np.ndarray]]:
        """Split the container into its frames' image files; refuse a damaged one."""
        data = bitstream.read_bytes()
        try:
            magic, _tag, width, height, frames, num, den = _HEADER.unpack_from(data)
            if magic != MAGIC:
                raise CodecFailure(f"{self.name}: {bitstream.name} is not a codeclab image stream")
            payloads = [np.frombuffer(p, dtype=np.uint8) for p in read_payloads(data, _HEADER.size, frames)]
            return width, height, Fraction(num, den), payloads
        except (struct.error, ValueError, ZeroDivisionError):
            raise CodecFailure(f"{self.name}: {bitstream.name} is truncated or damaged") from None

    def conditions(self) -> CodecConditions:
        import cv2

        return {
            "codec": self.name,
            "implementation": f"{_opencv_library(self.build_info_key)} via OpenCV {cv2.__version__} imencode/imdecode",
            "params": self.params,
            "colour_conversion": RGB_CONVERSION,
            "bitstream_format": "codeclab framed image stream CLF1 (24 bytes + 4 per frame)",
        }


@cache
def _opencv_library(name: str) -> str:
    """The image library OpenCV was built with, e.g. 'libjpeg-turbo 3.1.2-70'."""
    import cv2

    info = cv2.getBuildInformation()
    match = re.search(rf"^\s*{name}:\s*(.+)$", info, flags=re.MULTILINE)
    return match.group(1).strip() if match else name


class Jpeg(ImageCodec):
    name = "jpeg"
    summary = "JPEG (libjpeg-turbo, 4:2:0), per frame"
    extension = ".jpg"
    build_info_key = "JPEG"

    def imwrite_params(self) -> list[int]:
        import cv2

        return [cv2.IMWRITE_JPEG_QUALITY, self.params["quality"]]


class WebP(ImageCodec):
    name = "webp"
    summary = "WebP lossy (libwebp), per frame"
    extension = ".webp"
    build_info_key = "WEBP"

    def imwrite_params(self) -> list[int]:
        import cv2

        return [cv2.IMWRITE_WEBP_QUALITY, self.params["quality"]]


class Avif(ImageCodec):
    name = "avif"
    summary = "AVIF (libavif), per frame"
    extension = ".avif"
    build_info_key = "AVIF"

    def imwrite_params(self) -> list[int]:
        import cv2

        return [
            cv2.IMWRITE_AVIF_QUALITY,
            self.params["quality"],
            cv2.IMWRITE_AVIF_SPEED,
            self.params["speed"],
        ]

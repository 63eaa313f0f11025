"""Classical video anchors (x264, x265, SVT-AV1, VP9) through the pinned ffmpeg binary.

Each codes 8-bit and 10-bit references as they are (this build's libx264 has High 10, libx265
Main 10, libsvtav1 10-bit Main, libvpx-vp9 profile 2); the pixel format is given to the
encoder and the decoder explicitly, so ffmpeg never converts one silently.

Bitstreams are elementary streams (Annex B, OBU) or IVF, so the rate is the codec's
own bytes with no container overhead beyond IVF's 32 + 12 bytes per frame for VP9.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

from codeclab.experiments.result import CodecConditions
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.errors import CodecFailure
from codeclab.worker.ffmpeg import FFmpegFailed, ffmpeg_version, run_ffmpeg
from codeclab.worker.video import FrameCallback, FrameFile, write_y4m


class FFmpegVideoCodec(Codec):
    """Shared encode/decode plumbing; subclasses only spell their encoder options."""

    encoder: ClassVar[str]
    muxer: ClassVar[str]
    notes: ClassVar[str] = ""
    pix_fmts = ("yuv420p", "yuv420p10le")

    @abstractmethod
    def encoder_args(self) -> list[str]:
        """The encoder's own options: rate control, preset, keyint, threads."""

    def encode_command(self, reference: Path, bitstream: Path) -> list[str]:
        args = ["-v", "error", "-threads", "1", "-i", str(reference), "-map", "0:v:0", "-an", "-pix_fmt", self.pix_fmt]
        return [*args, "-c:v", self.encoder, *self.encoder_args(), "-f", self.muxer, str(bitstream)]

    def encode(self, reference: Path, bitstream: Path, on_frame: FrameCallback) -> None:
        try:
            run_ffmpeg(self.encode_command(reference, bitstream), on_frame=on_frame)
        except FFmpegFailed as exc:
            raise CodecFailure(f"{self.name} encoder failed: {exc}") from None

    def decode_to(self, bitstream: Path, header: StreamHeader, out: Path, on_frame: FrameCallback) -> None:
        raw = bitstream.with_suffix(".decoded.yuv")
        args = ["-v", "error", "-threads", str(self.params["threads"]), "-f", self.muxer]
        args += ["-i", str(bitstream), "-fps_mode", "passthrough", "-f", "rawvideo"]
        args += ["-pix_fmt", header.pix_fmt, str(raw)]
        try:
            run_ffmpeg(args, on_frame=on_frame)
            write_y4m(FrameFile.raw(raw, header.width, header.height, header.pix_fmt, header.fps), out)
        except (FFmpegFailed, ValueError) as exc:
            raise CodecFailure(f"{self.name} decoder failed: {exc}") from None
        finally:
            raw.unlink(missing_ok=True)

    def conditions(self) -> CodecConditions:
        command = self.encode_command(Path("reference.y4m"), Path(f"bitstream{self.bitstream_suffix}"))
        return {
            "codec": self.name,
            "implementation": f"{self.encoder} in ffmpeg {ffmpeg_version()} (imageio-ffmpeg build)",
            "params": self.params,
            "encode_command": "ffmpeg " + " ".join(command),
            "bitstream_format": self.muxer,
            "notes": self.notes,
        }

    def _rate_control(self) -> tuple[str, str]:
        """("qp", value) for a fixed quantiser, else ("crf", value); the schema allows one."""
        mode = "qp" if "qp" in self.params else "crf"
        return mode, str(self.params[mode])


class X264(FFmpegVideoCodec):
    name = "x264"
    summary = "H.264/AVC, libx264"
    bitstream_suffix = ".264"
    encoder = "libx264"
    muxer = "h264"
    notes = "x264's informational SEI (its settings string) is removed from the stream."

    def encoder_args(self) -> list[str]:
        p = self.params
        mode, value = self._rate_control()
        args = [f"-{mode}", value, "-preset", p["preset"]]
        args += ["-threads", str(p["threads"])]
        if "keyint" in p:
            args += ["-g", str(p["keyint"])]
        # the settings SEI is ~700 bytes of text, not video: 8% of a short QCIF clip
        return [*args, "-bsf:v", "filter_units=remove_types=6"]


class X265(FFmpegVideoCodec):
    name = "x265"
    summary = "H.265/HEVC, libx265"
    bitstream_suffix = ".265"
    encoder = "libx265"
    muxer = "hevc"
    notes = "x265's info SEI is disabled (info=0)."

    def encoder_args(self) -> list[str]:
        p = self.params
        mode, value = self._rate_control()
        x265 = [f"{mode}={value}", f"pools={p['threads']}", "frame-threads=1", "info=0", "log-level=error"]
        if "keyint" in p:
            x265.append(f"keyint={p['keyint']}")
        return ["-preset", p["preset"], "-x265-params", ":".join(x265)]


class SvtAv1(FFmpegVideoCodec):
    name = "svtav1"
    summary = "AV1, SVT-AV1"
    bitstream_suffix = ".obu"
    encoder = "libsvtav1"
    muxer = "obu"

    def encoder_args(self) -> list[str]:
        p = self.params
        svt = [f"lp={p['threads']}"]
        if "keyint" in p:
            svt.append(f"keyint={p['keyint']}")
        mode, value = self._rate_control()
        return [f"-{mode}", value, "-preset", str(p["preset"]), "-svtav1-params", ":".join(svt)]


class Vp9(FFmpegVideoCodec):
    name = "vp9"
    summary = "VP9, libvpx-vp9"
    bitstream_suffix = ".ivf"
    encoder = "libvpx-vp9"
    muxer = "ivf"
    notes = "IVF framing adds 32 + 12 bytes per frame; it is counted in the rate."

    def encoder_args(self) -> list[str]:
        p = self.params
        mode, q = self._rate_control()
        # libvpx has no qp mode: a fixed quantiser is crf with the q range pinned to it
        rate = ["-crf", q] if mode == "crf" else ["-crf", q, "-qmin", q, "-qmax", q]
        args = [*rate, "-b:v", "0", "-deadline", "good", "-cpu-used", str(p["cpu_used"])]
        args += ["-threads", str(p["threads"]), "-row-mt", "0"]
        if "keyint" in p:
            args += ["-g", str(p["keyint"])]
        return args

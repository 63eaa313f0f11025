"""10-bit and raw .yuv sources, end to end: reading, geometry, crop and size, codecs, refusals, conversion.

The 10-bit clip is real 10-bit content: carphone downscaled by ffmpeg's lanczos straight to
yuv420p10le, so its samples are not 8-bit values shifted left (the control test checks it).
Every file here is written by ffmpeg alone, independent of the worker's readers.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import boto3
import numpy as np
import pytest
from moto import mock_aws

from codeclab.worker.codecs import accept_reference, make_codec
from codeclab.worker.codecs.base import StreamHeader
from codeclab.worker.errors import InvalidSource, InvalidSpec
from codeclab.worker.rawyuv import geometry_from_name
from codeclab.worker.sources import builtin_clip_path, load_reference
from codeclab.worker.video import FrameFile, FrameSource, Video, read_y4m, write_y4m
from tests.conftest import ffmpeg
from tests.worker.test_entrypoint import ffmpeg_psnr_frames, result_of, run_worker

SIZE = "88x72"  # carphone's 176x144 halved: a tiny clip with every sample filtered at 10 bits
FRAMES = 3


def _planes(path: Path, pix_fmt: str) -> np.ndarray:
    """ffmpeg's own decode of a clip to raw samples, for comparing against the worker's reader."""
    raw = path.with_suffix(".check.raw")
    ffmpeg("-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, str(raw))
    return np.frombuffer(raw.read_bytes(), dtype=np.uint8 if pix_fmt == "yuv420p" else "<u2")


def _flat(video: FrameSource) -> np.ndarray:
    return np.concatenate([np.concatenate([p.ravel() for p in video.frame_planes(i)]) for i in range(video.frames)])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 10-bit clip as y4m and as raw .yuv named the JVET way, and its 8-bit twin as raw .yuv."""
    tmp = tmp_path_factory.mktemp("tenbit")
    source = str(builtin_clip_path("carphone"))
    scale = f"format=yuv420p10le,scale={SIZE.replace('x', ':')}:flags=lanczos"
    y4m = tmp / "carphone10.y4m"
    ffmpeg("-v", "error", "-i", source, "-frames:v", str(FRAMES), "-vf", scale, "-strict", "-1", str(y4m))
    raw10, raw8 = tmp / f"carphone_{SIZE}_30_10bit.yuv", tmp / f"carphone_{SIZE}_30.yuv"
    ffmpeg("-v", "error", "-i", str(y4m), "-f", "rawvideo", "-pix_fmt", "yuv420p10le", str(raw10))
    small = f"scale={SIZE.replace('x', ':')}:flags=lanczos"
    ffmpeg("-v", "error", "-i", source, "-frames:v", str(FRAMES), "-vf", small, "-f", "rawvideo", str(raw8))
    return {"y4m": y4m, "raw10": raw10, "raw8": raw8}


def test_control_the_10bit_clip_is_really_10bit(clips: dict[str, Path], tmp_path: Path) -> None:
    video = Video.of(load_reference({"clip": str(clips["y4m"]), "start": 0}, tmp_path).video)
    assert video.pix_fmt == "yuv420p10le" and video.y.dtype == np.uint16
    assert video.y.max() > 255 and np.any(video.y % 4) and np.any(video.u % 4)
    assert np.array_equal(_flat(video), _planes(clips["y4m"], "yuv420p10le"))


@pytest.mark.parametrize(("clip", "pix_fmt"), [("raw10", "yuv420p10le"), ("raw8", "yuv420p")])
def test_raw_yuv_geometry_from_the_file_name(clip: str, pix_fmt: str, clips: dict[str, Path], tmp_path: Path) -> None:
    path = clips[clip]
    reference = load_reference({"clip": str(path), "start": 1, "frames": 2}, tmp_path)
    video, info = reference.video, reference.info
    assert (video.width, video.height, video.frames, video.fps, video.pix_fmt) == (88, 72, 2, 30, pix_fmt)
    whole = np.frombuffer(path.read_bytes(), dtype=np.uint8 if pix_fmt == "yuv420p" else "<u2")
    assert np.array_equal(_flat(video), whole[len(whole) // FRAMES :])  # frames 1 and 2, exactly
    assert info["raw_geometry"] == "width, height, pix_fmt, fps from the file name" + (
        " (no bit-depth tag: 8-bit)" if pix_fmt == "yuv420p" else ""
    )
    assert info["sequence"] == path.stem and info["bit_depth"] == video.bit_depth and info["pix_fmt"] == pix_fmt


def test_raw_yuv_geometry_from_the_spec_fields(clips: dict[str, Path], tmp_path: Path) -> None:
    plain = tmp_path / "plain.yuv"
    shutil.copy(clips["raw10"], plain)
    source = {"clip": str(plain), "width": 88, "height": 72, "pix_fmt": "yuv420p10le", "fps": "30000/1001"}
    reference = load_reference(source, tmp_path)
    assert reference.video.fps == Fraction(30000, 1001) and reference.video.frames == FRAMES
    assert np.array_equal(_flat(reference.video), _planes(clips["y4m"], "yuv420p10le"))
    assert reference.info["raw_geometry"] == "width, height, pix_fmt, fps from the spec"
    assert reference.info["sequence"] == "plain"


def test_spec_fields_override_the_file_name(clips: dict[str, Path], tmp_path: Path) -> None:
    reference = load_reference({"clip": str(clips["raw10"]), "fps": 25}, tmp_path)
    assert reference.video.fps == 25
    assert reference.info["raw_geometry"] == "fps from the spec; width, height, pix_fmt from the file name"


def test_raw_yuv_without_geometry_names_the_fields_to_give(clips: dict[str, Path], tmp_path: Path) -> None:
    plain = tmp_path / "plain.yuv"
    shutil.copy(clips["raw10"], plain)
    with pytest.raises(InvalidSource, match=r"neither the spec nor the file name gives its pix_fmt, fps; add them"):
        load_reference({"clip": str(plain), "width": 88, "height": 72}, tmp_path)


def test_raw_yuv_that_is_not_whole_frames_is_refused_with_the_numbers(clips: dict[str, Path], tmp_path: Path) -> None:
    source = {"clip": str(clips["raw10"]), "width": 90, "height": 72}
    message = (
        r"holds 57024 bytes, which is 2\.933 frames of 90x72 yuv420p10le \(19440 bytes each\), not a whole "
        r"number; the geometry \(width, height from the spec; pix_fmt, fps from the file name\) does not fit"
    )
    with pytest.raises(InvalidSource, match=message) as info:
        load_reference(source, tmp_path)
    assert info.value.exit_code == 2


def test_10bit_samples_above_1023_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong_32x32_25_10bit.yuv"
    path.write_bytes(np.full(32 * 32 * 3 // 2, 0xFFC0, dtype="<u2").tobytes())  # 16-bit samples, not 10-bit
    with pytest.raises(InvalidSource, match=r"holds sample values up to 65472, above 10-bit's 1023"):
        load_reference({"clip": str(path), "start": 0}, tmp_path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BQMall_832x480_60.yuv", (832, 480, "60", "yuv420p", False)),
        ("NebutaFestival_2560x1600_60_10bit_crop.yuv", (2560, 1600, "60", "yuv420p10le", True)),
        ("MarketPlace_1920x1080_60fps_10bit_420.yuv", (1920, 1080, "60", "yuv420p10le", True)),
        ("ArenaOfValor_1920x1080_60_8bit_420.yuv", (1920, 1080, "60", "yuv420p", True)),
        ("Beauty_3840x2160_120fps_420_10bit_YUV.yuv", (3840, 2160, "120", "yuv420p10le", True)),
        ("Campfire_3840x2160_30fps_10bit_420_videoRange.yuv", (3840, 2160, "30", "yuv420p10le", True)),
        ("clip_1280x720_29.97.yuv", (1280, 720, "29.97", "yuv420p", False)),
        ("foreman_352x288.yuv", (352, 288, None, "yuv420p", False)),
    ],
)
def test_jvet_and_uvg_file_names(name: str, expected: tuple[object, ...]) -> None:
    named = geometry_from_name(name)
    assert named is not None
    assert (named.width, named.height, named.fps, named.pix_fmt, named.depth_tagged) == expected


def test_file_names_without_geometry_or_with_other_formats() -> None:
    assert geometry_from_name("carphone.yuv") is None
    assert geometry_from_name("832x480.yuv") is None  # a size needs a sequence name before it
    with pytest.raises(InvalidSource, match="4:2:2 chroma; codeclab measures 4:2:0 only"):
        geometry_from_name("Seq_1920x1080_50_10bit_422.yuv")
    with pytest.raises(InvalidSource, match="12-bit samples"):
        geometry_from_name("Seq_1920x1080_50_12bit.yuv")


def test_crop_and_size_stay_at_10bit(clips: dict[str, Path], tmp_path: Path) -> None:
    full = Video.of(load_reference({"clip": str(clips["y4m"]), "start": 0}, tmp_path).video)
    cropped = Video.of(load_reference({"clip": str(clips["raw10"]), "crop": [8, 4, 64, 48]}, tmp_path).video)
    assert np.array_equal(cropped.y, full.y[:, 4:52, 8:72]) and np.array_equal(cropped.u, full.u[:, 2:26, 4:36])
    # 88x72 covers 64x48 at 64x54, then the centre: ffmpeg's own 10-bit scale, cut by hand
    scaled = Video.of(load_reference({"clip": str(clips["y4m"]), "size": [64, 48]}, tmp_path).video)
    raw = tmp_path / "scaled.raw"
    flags = "lanczos+accurate_rnd+full_chroma_int"
    ffmpeg("-v", "error", "-i", str(clips["y4m"]), "-vf", f"scale=64:54:flags={flags}", "-f", "rawvideo",
           "-pix_fmt", "yuv420p10le", str(raw))  # fmt: skip
    theirs = Video.of(FrameFile.raw(raw, 64, 54, "yuv420p10le", Fraction(30)))
    assert scaled.pix_fmt == "yuv420p10le" and np.any(scaled.y % 4)
    assert np.array_equal(scaled.y, theirs.y[:, 2:50]) and np.array_equal(scaled.v, theirs.v[:, 1:25])


def test_y4m_10bit_written_by_us_is_read_by_ffmpeg_identically(clips: dict[str, Path], tmp_path: Path) -> None:
    video = read_y4m(clips["y4m"])
    ours = tmp_path / "ours.y4m"
    write_y4m(video, ours)
    assert ours.read_bytes().split(b"\n", 1)[0].endswith(b"C420p10 XYSCSS=420P10")
    assert np.array_equal(_planes(ours, "yuv420p10le"), _flat(video))


@pytest.mark.parametrize(
    ("name", "params", "profile"),
    [
        ("x264", {"crf": 23, "preset": "veryfast"}, "High 10"),
        ("x265", {"crf": 23, "preset": "veryfast"}, "Main 10"),
        ("svtav1", {"crf": 30, "preset": 12}, "Main"),
        ("vp9", {"crf": 30, "cpu_used": 8}, "Profile 2"),
    ],
)
def test_ffmpeg_codecs_code_10bit_as_10bit(
    name: str, params: dict, profile: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    reference = read_y4m(clips["y4m"])
    codec = make_codec(name, params)
    accept_reference(codec, reference.pix_fmt)
    bitstream = tmp_path / f"b{codec.bitstream_suffix}"
    codec.encode(clips["y4m"], bitstream, lambda _: None)
    with av.open(str(bitstream), format=codec.muxer) as container:
        stream = container.streams.video[0].codec_context
        assert (stream.pix_fmt, stream.profile) == ("yuv420p10le", profile)
    decoded = codec.decode(bitstream, StreamHeader.of(reference), lambda _: None)
    assert decoded.pix_fmt == "yuv420p10le" and decoded.y.max() > 255 and np.any(decoded.y % 4)
    mse = np.mean((decoded.y.astype(np.float64) - reference.y) ** 2)
    assert 30 < 10 * np.log10(1023**2 / mse) < 60
    assert "-pix_fmt yuv420p10le" in codec.conditions()["encode_command"]


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "learned", "custom"])
def test_8bit_codecs_refuse_10bit_naming_the_way_out(name: str) -> None:
    code = "def encode(frames, params):\n    return b''\n\ndef decode(bitstream, header):\n    return None\n"
    codec = make_codec(name, {}, code if name == "custom" else None)
    message = (
        rf"\$\.codec\.name: {name} takes yuv420p only, and this source is yuv420p10le; it is never converted "
        r"silently\. Use a codec that takes yuv420p10le here \(x264, x265, svtav1, vp9\), or add "
        r'"convert_to": "yuv420p" to source'
    )
    with pytest.raises(InvalidSpec, match=message):
        accept_reference(codec, "yuv420p10le")


def test_convert_to_rounds_like_hm_and_is_recorded(clips: dict[str, Path], tmp_path: Path) -> None:
    ten = Video.of(load_reference({"clip": str(clips["y4m"]), "start": 0}, tmp_path).video)
    eight = load_reference({"clip": str(clips["y4m"]), "convert_to": "yuv420p"}, tmp_path)
    assert eight.video.pix_fmt == "yuv420p"
    assert np.array_equal(Video.of(eight.video).y, np.minimum((ten.y.astype(np.int32) + 2) // 4, 255))
    assert (eight.info["bit_depth"], eight.info["source_pix_fmt"]) == (8, "yuv420p10le")
    assert eight.info["bit_depth_conversion"].startswith("yuv420p10le to yuv420p after crop and size")
    already = load_reference({"clip": str(clips["raw8"]), "convert_to": "yuv420p"}, tmp_path)
    assert already.info["bit_depth_conversion"] == "none"


def _spec(clip: Path, codec: dict, **source: object) -> dict:
    return {
        "name": "tenbit",
        "source": {"clip": str(clip), **source},
        "codec": codec,
        "limits": {"stall_seconds": 30},
        "metrics": {"vmaf": False},
    }


@pytest.fixture(scope="module")
def x265_run(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("x265") / "run"
    codec = {"name": "x265", "params": {"crf": 30, "preset": "veryfast"}}
    proc = run_worker(_spec(clips["y4m"], codec, sequence="carphone", **{"class": "mini"}), out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_worker_psnr_at_10bit_matches_ffmpeg_on_the_artifacts(x265_run: Path, tmp_path: Path) -> None:
    result = result_of(x265_run)
    theirs = ffmpeg_psnr_frames(x265_run / "recon.y4m", x265_run / "reference.y4m", tmp_path)
    assert len(theirs) == result["frames"] == FRAMES
    for plane in ("psnr_y", "psnr_u", "psnr_v"):
        assert result["metrics"][plane] == pytest.approx(sum(row[plane] for row in theirs) / FRAMES, abs=0.01)
    assert "1023^2/MSE" in result["conditions"]["metrics"]["psnr"]


def test_worker_records_the_10bit_conditions_and_decodes_at_10bit(x265_run: Path) -> None:
    result = result_of(x265_run)
    source = result["conditions"]["source"]
    assert (source["pix_fmt"], source["bit_depth"], source["bit_depth_conversion"]) == ("yuv420p10le", 10, "none")
    assert (source["sequence"], source["class"]) == ("carphone", "mini")
    recon = read_y4m(x265_run / "recon.y4m")
    assert recon.pix_fmt == "yuv420p10le" and recon.y.max() > 255 and np.any(recon.y % 4)
    # the compression ratio counts the raw clip at 10 bits a sample, not 16
    raw_bytes = 88 * 72 * 3 // 2 * 10 / 8 * FRAMES
    assert result["metrics"]["compression_ratio"] == pytest.approx(raw_bytes / result["bitstream"]["bytes"])


def test_worker_refuses_an_8bit_codec_before_encoding(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "jpeg"
    proc = run_worker(_spec(clips["raw10"], {"name": "jpeg"}), out)
    assert proc.returncode == 2
    error = result_of(out)["error"]
    assert error["type"] == "INVALID_SPEC" and "jpeg takes yuv420p only" in error["message"]
    assert not list(out.glob("bitstream*")) and not (out / "reference.y4m").exists()


def test_worker_converts_only_when_asked_and_records_it(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "jpeg8"
    proc = run_worker(_spec(clips["raw10"], {"name": "jpeg"}, convert_to="yuv420p"), out)
    assert proc.returncode == 0, proc.stderr
    result = result_of(out)
    source = result["conditions"]["source"]
    assert (source["source_pix_fmt"], source["pix_fmt"], source["bit_depth"]) == ("yuv420p10le", "yuv420p", 8)
    assert "(v + 2) >> 2" in source["bit_depth_conversion"]
    assert json.loads((out / "result.json").read_text())["spec"]["source"]["convert_to"] == "yuv420p"


@mock_aws
def test_s3_raw_yuv_takes_its_geometry_from_the_key_name(clips: dict[str, Path], tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="clips")
    s3.upload_file(str(clips["raw10"]), "clips", f"jvet/{clips['raw10'].name}")
    reference = load_reference({"clip": f"s3://clips/jvet/{clips['raw10'].name}", "frames": 2}, tmp_path)
    assert reference.video.pix_fmt == "yuv420p10le" and reference.info["sequence"] == clips["raw10"].stem
    assert np.array_equal(Video.of(reference.video).y, read_y4m(clips["y4m"]).y[:2])


def test_10bit_mp4_decodes_at_10bit(clips: dict[str, Path], tmp_path: Path) -> None:
    mp4 = tmp_path / "lossless10.mp4"
    ffmpeg("-v", "error", "-i", str(clips["y4m"]), "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p10le", str(mp4))
    reference = load_reference({"clip": str(mp4), "start": 0}, tmp_path)
    assert reference.info["source_pix_fmt"] == "yuv420p10le"
    assert np.array_equal(_flat(reference.video), _flat(read_y4m(clips["y4m"])))

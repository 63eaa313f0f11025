"""Sources: builtin, local y4m/mp4 and s3 clips, frame ranges, crop, scale and bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from codeclab.worker.errors import InvalidInput
from codeclab.worker.sources import builtin_clip_path, cover_size, load_reference
from codeclab.worker.video import Video, raw_frame, read_y4m, write_y4m
from tests.conftest import extract_y4m, ffmpeg


@pytest.fixture(scope="module")
def carphone12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_y4m("carphone", tmp_path_factory.mktemp("src") / "carphone12.y4m", 12)


@pytest.mark.parametrize(("name", "size"), [("carphone", (176, 144)), ("bbb", (1280, 720)), ("bikes", (640, 272))])
def test_builtin_clips_load_as_yuv420p(name: str, size: tuple[int, int], tmp_path: Path) -> None:
    ref = load_reference({"clip": f"builtin:{name}", "frames": 2}, tmp_path)
    assert (ref.video.width, ref.video.height, ref.video.frames) == (*size, 2)
    assert ref.info["source_pix_fmt"] == "yuv420p"
    assert len(ref.info["sha256"]) == 64


def test_mp4_and_y4m_of_the_same_frames_are_identical(carphone12: Path, tmp_path: Path) -> None:
    from_mp4 = Video.of(load_reference({"clip": "builtin:carphone", "frames": 12}, tmp_path).video)
    from_y4m = Video.of(load_reference({"clip": str(carphone12)}, tmp_path).video)
    assert from_y4m.frames == 12
    assert np.array_equal(from_mp4.y, from_y4m.y) and np.array_equal(from_mp4.v, from_y4m.v)
    assert from_mp4.fps == from_y4m.fps == Fraction(30000, 1001)


def test_start_and_frames_select_the_same_frames_in_mp4_and_y4m(carphone12: Path, tmp_path: Path) -> None:
    whole = read_y4m(carphone12)
    for clip in ("builtin:carphone", str(carphone12)):
        part = Video.of(load_reference({"clip": clip, "start": 5, "frames": 4}, tmp_path).video)
        assert np.array_equal(part.y, whole.y[5:9]), clip
        assert np.array_equal(part.u, whole.u[5:9]), clip


def test_crop_is_exact(carphone12: Path, tmp_path: Path) -> None:
    whole = read_y4m(carphone12)
    ref = Video.of(load_reference({"clip": str(carphone12), "crop": [10, 20, 64, 32]}, tmp_path).video)
    assert np.array_equal(ref.y, whole.y[:, 20:52, 10:74])
    assert np.array_equal(ref.u, whole.u[:, 10:26, 5:37])


def test_cover_size_keeps_aspect_and_covers_the_target() -> None:
    assert cover_size(1280, 720, 448, 256) == (456, 256)
    assert cover_size(176, 144, 128, 128) == (158, 128)
    assert cover_size(640, 272, 320, 100) == (320, 136)
    assert cover_size(1280, 720, 640, 360) == (640, 360)


def test_size_scales_to_cover_then_crops_the_centre(tmp_path: Path) -> None:
    ref = load_reference({"clip": "builtin:bbb", "frames": 2, "size": [448, 256]}, tmp_path)
    assert (ref.video.width, ref.video.height) == (448, 256)
    # independently: ffmpeg scales to 456x256 and crops the centre 448 columns (offset 4)
    expected = tmp_path / "expected.y4m"
    flags = "lanczos+accurate_rnd+full_chroma_int"
    ffmpeg("-v", "error", "-i", str(builtin_clip_path("bbb")), "-frames:v", "2",
           "-vf", f"scale=456:256:flags={flags},crop=448:256:4:0", "-pix_fmt", "yuv420p", str(expected))  # fmt: skip
    theirs = read_y4m(expected)
    assert np.abs(Video.of(ref.video).y.astype(int) - theirs.y).max() <= 1
    assert ref.info["scaling"].startswith("ffmpeg swscale lanczos")


def test_fps_overrides_the_rate_without_dropping_frames(tmp_path: Path) -> None:
    ref = load_reference({"clip": "builtin:carphone", "frames": 6, "fps": "25/1"}, tmp_path)
    assert ref.video.fps == 25 and ref.video.frames == 6
    assert ref.info["source_fps"] == "30000/1001"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"clip": "builtin:carphone", "start": 500}, r"\$\.source\.start: no frames at or after frame 500"),
        (
            {"clip": "builtin:carphone", "start": 100, "frames": 32},
            r"asked for 32 frames from frame 100, but the clip has only 20",
        ),
        (
            {"clip": "builtin:carphone", "frames": 2, "crop": [100, 0, 100, 64]},
            r"\$\.source\.crop: \[100, 0, 100, 64\] reaches beyond the 176x144 clip",
        ),
        (
            {"clip": "builtin:carphone", "frames": 2, "size": [352, 288]},
            r"\$\.source\.size: \[352, 288\] is larger than the 176x144 clip",
        ),
        ({"clip": "missing/clip.mp4"}, r"no such file 'missing/clip.mp4'"),
    ],
)
def test_bad_source_requests_are_clear_errors(source: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        load_reference(source, tmp_path)
    assert info.value.exit_code == 2


def test_corrupt_mp4_is_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(builtin_clip_path("carphone").read_bytes()[:3000])
    with pytest.raises(InvalidInput, match=r"corrupt\.mp4: corrupt or unreadable video"):
        load_reference({"clip": str(corrupt)}, tmp_path)


def test_garbage_mp4_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01" * 5000)
    with pytest.raises(InvalidInput, match="corrupt or unreadable video"):
        load_reference({"clip": str(garbage)}, tmp_path)


def test_y4m_that_is_not_420_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = extract_y4m("carphone", tmp_path / "yuv422p.y4m", 2, "yuv422p")
    with pytest.raises(
        InvalidInput, match=r"colour format C422 is refused.*ffmpeg -i yuv422p\.y4m -pix_fmt yuv420p10le"
    ):
        load_reference({"clip": str(path)}, tmp_path)


def test_y4m_written_by_us_reads_back_identically(carphone12: Path, tmp_path: Path) -> None:
    video = read_y4m(carphone12)
    copy = tmp_path / "copy.y4m"
    write_y4m(video, copy)
    again = read_y4m(copy)
    assert np.array_equal(again.y, video.y) and np.array_equal(again.u, video.u) and again.fps == video.fps
    # and ffmpeg reads our y4m as the same frames
    raw = tmp_path / "raw.yuv"
    ffmpeg("-v", "error", "-i", str(copy), "-f", "rawvideo", str(raw))
    assert raw.read_bytes() == b"".join(raw_frame(video.frame_planes(i), video.pix_fmt) for i in range(video.frames))


@mock_aws
def test_s3_clip_is_downloaded_and_used(carphone12: Path, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="clips")
    s3.upload_file(str(carphone12), "clips", "qcif/carphone.y4m")
    ref = load_reference({"clip": "s3://clips/qcif/carphone.y4m", "frames": 3}, tmp_path)
    assert ref.video.frames == 3
    assert np.array_equal(Video.of(ref.video).y, read_y4m(carphone12).y[:3])


@mock_aws
def test_missing_s3_object_is_a_clear_error(tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket="clips")
    with pytest.raises(InvalidInput, match=r"s3://clips/nope\.mp4 does not exist \(check the bucket and key\)"):
        load_reference({"clip": "s3://clips/nope.mp4"}, tmp_path)

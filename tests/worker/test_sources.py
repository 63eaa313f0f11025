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
from codeclab.worker.video import FrameFile, Video, Y4MWriter, raw_frame, read_y4m, write_y4m
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


# --- reading frame by frame ------------------------------------------------------------


def test_frames_are_read_one_at_a_time_from_the_file(carphone12: Path, tmp_path: Path) -> None:
    whole = read_y4m(carphone12)
    frames = FrameFile.y4m(carphone12, 3, 4)
    assert (frames.frames, frames.width, frames.height, frames.pix_fmt) == (4, 176, 144, "yuv420p")
    for index in (3, 0, 2):  # any order: each frame is at its own offset
        planes = zip(frames.frame_planes(index), whole.frame_planes(3 + index), strict=True)
        assert all(np.array_equal(ours, theirs) for ours, theirs in planes)
    with pytest.raises(IndexError):
        frames.frame_planes(4)


def test_a_truncated_y4m_is_refused_only_where_the_frames_asked_for_reach(carphone12: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.y4m"
    cut.write_bytes(carphone12.read_bytes()[:-100])  # the 12th frame is incomplete
    assert FrameFile.y4m(cut, 0, 11).frames == 11
    with pytest.raises(InvalidInput, match=r"cut\.y4m: truncated y4m frame 11"):
        load_reference({"clip": str(cut)}, tmp_path)


def test_y4m_frame_parameters_are_refused_with_the_fix(carphone12: Path, tmp_path: Path) -> None:
    data = carphone12.read_bytes()
    tagged = tmp_path / "tagged.y4m"
    tagged.write_bytes(data.replace(b"FRAME\n", b"FRAME Ip\n"))
    with pytest.raises(InvalidInput, match=r"frame 0 does not start with a plain y4m FRAME marker.*yuv4mpegpipe"):
        load_reference({"clip": str(tagged), "frames": 2}, tmp_path)


def test_the_reference_is_written_without_intermediate_files_left(tmp_path: Path) -> None:
    ref = load_reference({"clip": "builtin:bbb", "frames": 2, "size": [448, 256]}, tmp_path, tmp_path / "ref.y4m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.y4m"]
    assert ref.video.path == tmp_path / "ref.y4m" and read_y4m(ref.video.path).frames == 2


def test_the_y4m_writer_refuses_a_frame_of_another_size(tmp_path: Path) -> None:
    with Y4MWriter(tmp_path / "x.y4m", 16, 8, Fraction(25), "yuv420p") as out:
        out.write((np.zeros((8, 16), np.uint8), np.zeros((4, 8), np.uint8), np.zeros((4, 8), np.uint8)))
        with pytest.raises(ValueError, match="a frame of planes"):
            out.write((np.zeros((8, 18), np.uint8), np.zeros((4, 9), np.uint8), np.zeros((4, 9), np.uint8)))
    assert FrameFile.y4m(tmp_path / "x.y4m").frames == 1

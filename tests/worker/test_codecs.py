"""Codecs: real bitstreams that decode from the file alone, pinned and repeatable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from codeclab.experiments import codec_names
from codeclab.worker.codecs import REGISTRY, StreamHeader, make_codec
from codeclab.worker.colour import rgb_to_yuv420, yuv420_to_rgb
from codeclab.worker.errors import CodecFailure, InvalidInput
from codeclab.worker.video import read_y4m
from tests.conftest import ffmpeg

CASES = [
    ("x264", {"crf": 30}),
    ("x265", {"crf": 32, "preset": "fast"}),
    ("svtav1", {"crf": 40, "preset": 10}),
    ("vp9", {"crf": 40, "cpu_used": 5}),
    ("jpeg", {"quality": 50}),
    ("webp", {"quality": 50}),
    ("avif", {"quality": 50, "speed": 9}),
]


def encode(name: str, params: dict, reference: Path, folder: Path) -> tuple[Path, list[int]]:
    codec = make_codec(name, params)
    bitstream = folder / f"{name}{codec.bitstream_suffix}"
    reported: list[int] = []
    codec.encode(reference, bitstream, reported.append)
    return bitstream, reported


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_registry_matches_the_schema() -> None:
    assert list(REGISTRY) == codec_names()


@pytest.mark.parametrize(("name", "params"), CASES)
def test_round_trip_gives_the_reference_shape_and_sane_quality(
    name: str, params: dict, carphone_y4m: Path, tmp_path: Path
) -> None:
    reference = read_y4m(carphone_y4m)
    bitstream, reported = encode(name, params, carphone_y4m, tmp_path)
    assert 0 < bitstream.stat().st_size < reference.raw_bytes / 4
    assert reported[-1] == reference.frames
    # decode with a fresh instance: nothing but the file and the public header crosses over
    decoded = make_codec(name, params).decode(bitstream, StreamHeader.of(reference), lambda _: None)
    assert (decoded.frames, decoded.height, decoded.width) == (8, 144, 176)
    assert 28 < psnr_y(decoded.y, reference.y) < 50


@pytest.mark.parametrize(("name", "params"), [c for c in CASES if c[0] in {"x264", "x265", "svtav1", "vp9"}])
def test_video_bitstreams_are_standard_streams_that_ffmpeg_decodes_alone(
    name: str, params: dict, carphone_y4m: Path, tmp_path: Path
) -> None:
    bitstream, _ = encode(name, params, carphone_y4m, tmp_path)
    theirs = tmp_path / "theirs.y4m"
    ffmpeg("-v", "error", "-i", str(bitstream), "-pix_fmt", "yuv420p", str(theirs))
    ours = make_codec(name, params).decode(bitstream, StreamHeader.of(read_y4m(carphone_y4m)), lambda _: None)
    assert np.array_equal(read_y4m(theirs).y, ours.y)


@pytest.mark.parametrize(("name", "params"), CASES)
def test_pinned_threads_make_bitstreams_repeatable(name: str, params: dict, carphone_y4m: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, _ = encode(name, params, carphone_y4m, tmp_path / "a")
    second, _ = encode(name, params, carphone_y4m, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("name", ["x264", "x265", "vp9", "svtav1"])
def test_keyint_1_makes_every_frame_intra(name: str, carphone_y4m: Path, tmp_path: Path) -> None:
    bitstream, _ = encode(name, {"keyint": 1}, carphone_y4m, tmp_path)
    with av.open(str(bitstream)) as container:
        keys = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
    assert len(keys) == 8 and all(keys)


def test_lower_crf_spends_more_bits_for_more_quality(carphone_y4m: Path, tmp_path: Path) -> None:
    reference = read_y4m(carphone_y4m)
    results = []
    for crf in (22, 38):
        (tmp_path / str(crf)).mkdir()
        bitstream, _ = encode("x264", {"crf": crf}, carphone_y4m, tmp_path / str(crf))
        decoded = make_codec("x264", {"crf": crf}).decode(bitstream, StreamHeader.of(reference), lambda _: None)
        results.append((bitstream.stat().st_size, psnr_y(decoded.y, reference.y)))
    (bytes_hi, psnr_hi), (bytes_lo, psnr_lo) = results
    assert bytes_hi > 2 * bytes_lo and psnr_hi > psnr_lo + 5


def test_qp_mode_is_used_when_given() -> None:
    cond = make_codec("x265", {"qp": 30}).conditions()
    assert "qp=30" in cond["encode_command"] and "crf" not in cond["encode_command"]
    cond = make_codec("vp9", {"qp": 40}).conditions()
    assert "-qmin 40 -qmax 40" in cond["encode_command"]


def test_x264_settings_sei_is_removed(carphone_y4m: Path, tmp_path: Path) -> None:
    bitstream, _ = encode("x264", {}, carphone_y4m, tmp_path)
    assert b"x264 - core" not in bitstream.read_bytes()


def test_image_stream_counts_its_container_bytes(carphone_y4m: Path, tmp_path: Path) -> None:
    bitstream, _ = encode("jpeg", {"quality": 80}, carphone_y4m, tmp_path)
    data = bitstream.read_bytes()
    assert data[:4] == b"CLF1"
    # 24-byte header, then u32 length + one JFIF image per frame, nothing else
    offset, images = 24, 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        assert data[offset + 4 : offset + 6] == b"\xff\xd8"
        offset += 4 + length
        images += 1
    assert (offset, images) == (len(data), 8)


def test_colour_round_trip_without_a_codec_is_near_lossless(carphone_y4m: Path) -> None:
    video = read_y4m(carphone_y4m)
    y, u, v = rgb_to_yuv420(yuv420_to_rgb(*video.frame_planes(3)))
    assert psnr_y(y, video.y[3]) > 60 and psnr_y(u, video.u[3]) > 60 and psnr_y(v, video.v[3]) > 60


def test_truncated_bitstream_is_a_codec_failure(carphone_y4m: Path, tmp_path: Path) -> None:
    bitstream, _ = encode("jpeg", {}, carphone_y4m, tmp_path)
    bitstream.write_bytes(bitstream.read_bytes()[: bitstream.stat().st_size // 2])
    with pytest.raises(CodecFailure) as info:
        make_codec("jpeg", {}).decode(bitstream, StreamHeader.of(read_y4m(carphone_y4m)), lambda _: None)
    assert info.value.exit_code == 4


def test_unknown_codec_and_bad_params_list_the_valid_choices() -> None:
    with pytest.raises(InvalidInput, match="unknown codec 'h266'; valid: x264, x265, svtav1, vp9, jpeg, webp, avif"):
        make_codec("h266", {})
    with pytest.raises(InvalidInput, match=r"\$\.codec\.params: unknown parameter 'q'; valid: quality, speed"):
        make_codec("avif", {"q": 3})
    with pytest.raises(InvalidInput, match=r"\$\.codec\.params\.crf: 52 is greater than the maximum of 51"):
        make_codec("x264", {"crf": 52})


def test_the_worker_starts_without_torch() -> None:
    """Only the learned codec needs torch; importing it at start-up would add about a second to every job."""
    probe = "import sys, codeclab.worker.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

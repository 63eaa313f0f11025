"""The built-in learned codec: exact entropy coding, standalone decoding, and the shipped weights."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.codecs.learned.entropy import (
    PRECISION,
    SCALE_TABLE,
    Decoder,
    Encoder,
    gaussian_tables,
    prior_tables,
    scale_indexes,
)
from codeclab.worker.codecs.learned.frame_coder import FrameCoder
from codeclab.worker.codecs.learned.weights import QUALITIES, WEIGHTS_DIR, builtin_weights, load_model, weights_path
from codeclab.worker.errors import CodecFailure, InvalidInput
from codeclab.worker.metrics import plane_psnr
from codeclab.worker.video import read_y4m, write_y4m

from ..conftest import REPO


def ignore(_count: int) -> None:
    pass


# --- entropy coding --------------------------------------------------------------------


def test_every_table_is_exact_fixed_point_and_can_code_every_symbol() -> None:
    tables = [*gaussian_tables(), *prior_tables(load_model(builtin_weights(1)).net.prior)]
    for table in tables:
        assert table.counts.sum() == 2**PRECISION
        assert table.counts.min() >= 1
    assert len(gaussian_tables()) == len(SCALE_TABLE) == 64


def test_scales_snap_up_to_the_table() -> None:
    assert list(scale_indexes(SCALE_TABLE)) == list(range(64))
    assert scale_indexes(np.array([0.0, SCALE_TABLE[3] * 1.0001, 1e6])).tolist() == [0, 4, 63]


def test_values_far_outside_every_table_round_trip_through_the_escape_code() -> None:
    rng = np.random.default_rng(1)
    tables = gaussian_tables()
    groups = [rng.normal(0, 3 * SCALE_TABLE[i], 200).round().astype(np.int64) for i in range(0, 64, 9)]
    groups[0][:4] = [2**30 - 1, -(2**30), 70_000, -1]
    encoder = Encoder()
    for values, index in zip(groups, range(0, 64, 9), strict=True):
        encoder.encode(values, tables[index])
    decoder = Decoder(encoder.finish())
    decoded = [decoder.decode(len(v), tables[i]) for v, i in zip(groups, range(0, 64, 9), strict=True)]
    decoder.resolve_escapes()
    for got, want in zip(decoded, groups, strict=True):
        assert np.array_equal(got, want)


# --- the codec -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoded(carphone_y4m: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Carphone's first 3 frames at quality 2, and each one's reconstruction, decoded in this process."""
    out = tmp_path_factory.mktemp("learned")
    reference = out / "ref.y4m"
    video = read_y4m(carphone_y4m, count=3)
    write_y4m(video, reference)
    codec = make_codec("learned", {"quality": 2, "device": "cpu"})
    bitstream = out / "stream.cln"
    codec.encode(reference, bitstream, ignore)
    coder = FrameCoder(load_model(builtin_weights(2)).net, torch.device("cpu"))
    recon = [coder.decode(coder.encode(video.frame_planes(i)), video.width, video.height) for i in range(3)]
    return bitstream, recon


@pytest.mark.slow
def test_decoding_the_file_alone_in_a_fresh_process_gives_the_encoders_reconstruction(
    encoded: tuple[Path, list], tmp_path: Path
) -> None:
    bitstream, recon = encoded
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from fractions import Fraction\n"
        "from codeclab.worker.codecs import StreamHeader, make_codec\n"
        "codec = make_codec('learned', {'quality': 2, 'device': 'cpu', 'threads': int(sys.argv[3])})\n"
        "video = codec.decode(Path(sys.argv[1]), StreamHeader(0, 0, 0, Fraction(1)), lambda n: None)\n"
        "np.savez(sys.argv[2], y=video.y, u=video.u, v=video.v)\n"
    )
    decoded = {}
    for threads in (2, 1):
        out = tmp_path / f"decoded{threads}.npz"
        subprocess.run([sys.executable, "-c", script, str(bitstream), str(out), str(threads)], check=True, cwd=REPO)
        decoded[threads] = np.load(out)
    for index, planes in enumerate(recon):
        for name, plane in zip("yuv", planes, strict=True):
            # the same pinned threads as the encoder: byte for byte
            assert np.array_equal(decoded[2][name][index], plane), (index, name)
            # another thread count sums floats in another order; the latents are the same, so a
            # pixel can move by at most one level where the synthesis lands on a rounding boundary
            difference = np.abs(decoded[1][name][index].astype(int) - plane)
            assert difference.max() <= 1 and np.count_nonzero(difference) <= plane.size // 1000, (index, name)


def test_a_job_loads_the_weights_once_for_encode_and_decode(carphone_y4m: Path, tmp_path: Path) -> None:
    write_y4m(read_y4m(carphone_y4m, count=2), tmp_path / "ref.y4m")
    load_model.cache_clear()
    codec = make_codec("learned", {"quality": 2, "device": "cpu"})
    codec.prepare()  # the worker times this as setup_s
    loaded = load_model.cache_info().misses
    codec.encode(tmp_path / "ref.y4m", tmp_path / "stream.cln", ignore)
    codec.decode(tmp_path / "stream.cln", StreamHeader(176, 144, 2, Fraction(30)), ignore)
    assert loaded == 1 and load_model.cache_info().misses == 1


def test_a_damaged_stream_is_a_codec_failure_not_garbage(encoded: tuple[Path, list], tmp_path: Path) -> None:
    bitstream, _ = encoded
    codec = make_codec("learned", {"quality": 2})
    header = StreamHeader(176, 144, 3, 1)
    truncated = tmp_path / "truncated.cln"
    truncated.write_bytes(bitstream.read_bytes()[:-50])
    with pytest.raises(CodecFailure, match="truncated or damaged"):
        codec.decode(truncated, header, ignore)
    with pytest.raises(CodecFailure, match=r"quality 2 weights \w+, but this decoder has quality 3"):
        make_codec("learned", {"quality": 3}).decode(bitstream, header, ignore)


def test_more_quality_costs_more_bits_and_gives_more_psnr(carphone_y4m: Path, tmp_path: Path) -> None:
    reference = read_y4m(carphone_y4m, count=2)
    write_y4m(reference, tmp_path / "ref.y4m")
    sizes, psnrs = [], []
    for quality in QUALITIES:
        codec = make_codec("learned", {"quality": quality})
        bitstream = tmp_path / f"q{quality}.cln"
        codec.encode(tmp_path / "ref.y4m", bitstream, ignore)
        decoded = codec.decode(bitstream, StreamHeader.of(reference), ignore)
        sizes.append(bitstream.stat().st_size)
        psnrs.append(np.mean([plane_psnr(r, d) for r, d in zip(reference.y, decoded.y, strict=True)]))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    assert psnrs == sorted(psnrs), psnrs
    assert psnrs[0] > 24, "even the lowest rate point is a recognisable picture"


# --- the shipped weights ---------------------------------------------------------------


def test_shipped_weights_are_small_safetensors_loaded_without_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [weights_path(q) for q in QUALITIES]
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    assert sorted(WEIGHTS_DIR.iterdir()) == sorted(files), "only the shipped levels live there"

    def no_pickle(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("weights must not be unpickled")

    monkeypatch.setattr(torch, "load", no_pickle)
    load_model.cache_clear()
    for quality in QUALITIES:
        model = load_model(builtin_weights(quality))
        assert model.metadata["quality"] == quality
        assert model.metadata["steps"] >= 1000 and model.metadata["seed"] == 20261128
        header_length = int.from_bytes(files[quality - 1].read_bytes()[:8], "little")
        header = json.loads(files[quality - 1].read_bytes()[8 : 8 + header_length])
        assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")


def test_a_missing_quality_names_the_field_and_the_command() -> None:
    with pytest.raises(InvalidInput, match=r"\$\.codec\.params\.quality: .*codeclab train --quality 7 --out FILE"):
        builtin_weights(7)


# --- the worker and training -----------------------------------------------------------


@pytest.mark.slow
def test_the_worker_records_the_device_weights_and_colour_handling(tmp_path: Path) -> None:
    codec = {"name": "learned", "params": {"quality": 1}}
    spec = {"name": "learned-q1", "source": {"clip": "builtin:carphone", "frames": 2}, "codec": codec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "codeclab.worker", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out")]
    subprocess.run([*cmd, "--no-vmaf"], check=True, cwd=REPO, capture_output=True)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "SUCCEEDED"
    assert result["resources"]["device"] == "cpu"
    codec = result["conditions"]["codec"]
    assert codec["weights"]["fingerprint"] == load_model(builtin_weights(1)).fingerprint.hex()
    assert "no RGB conversion" in codec["colour_conversion"]
    assert result["metrics"]["bpp"] == (tmp_path / "out" / "bitstream.cln").stat().st_size * 8 / (176 * 144 * 2)


@pytest.mark.slow
def test_training_is_seeded_so_a_rerun_writes_the_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run / "q1.safetensors"
        cmd = [sys.executable, "-m", "codeclab.cli", "train", "--quality", "1", "--steps", "2", "--out", str(out)]
        subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
        outputs.append(load_file(str(out)))
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert torch.equal(outputs[0][name], outputs[1][name]), name
    trained = load_model(tmp_path / "a" / "q1.safetensors")
    assert trained.metadata["steps"] == 2 and trained.metadata["lambda"] == 0.0035
    assert trained.metadata["train_sources"][0] == {"clip": "builtin:bikes", "start": 0}


def test_training_and_evaluation_frames_are_disjoint() -> None:
    from codeclab.training.data import EVAL_SOURCES, TRAIN_SOURCES, frame_ranges

    train, evaluation = frame_ranges(TRAIN_SOURCES), frame_ranges(EVAL_SOURCES)
    for clip, frames in evaluation.items():
        assert not frames & train.get(clip, set()), clip
    assert evaluation == {"builtin:bbb": set(range(32)), "builtin:carphone": set(range(120))}

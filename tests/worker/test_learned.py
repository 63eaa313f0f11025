"""The built-in learned codec: exact entropy coding, a P-chain decoded exactly in a fresh process, the shipped
weights, and resumable training."""

from __future__ import annotations

import itertools
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
from codeclab.worker.codecs.learned.frame_coder import FrameCoder, SequenceEncoder, crop
from codeclab.worker.codecs.learned.model import (
    Architecture,
    VideoNet,
    initial_log_gains,
    pack_yuv420,
    unpack_yuv420,
)
from codeclab.worker.codecs.learned.motion import compensate
from codeclab.worker.codecs.learned.stream import read_stream
from codeclab.worker.codecs.learned.weights import BUILTIN, QUALITIES, WEIGHTS_DIR, builtin_weights, load_model
from codeclab.worker.errors import CodecFailure
from codeclab.worker.metrics import plane_psnr
from codeclab.worker.video import Video, read_y4m, write_y4m

from ..conftest import REPO, extract_y4m


def ignore(_count: int) -> None:
    pass


# --- entropy coding --------------------------------------------------------------------


def test_every_table_is_exact_fixed_point_and_can_code_every_symbol() -> None:
    net = load_model(builtin_weights()).net
    tables = [*gaussian_tables(), *prior_tables(net.intra.entropy.prior), *prior_tables(net.inter.entropy.prior)]
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


# --- the codec ----------------------------------------------------------------------------

FRAMES, PERIOD = 33, 32  # a whole group of 32 (an I-frame and 31 P-frames), and the next group's I-frame


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, Video]:
    """Carphone's first 33 frames at quality 2, the reconstruction the encoder kept of each, and the frames."""
    out = tmp_path_factory.mktemp("learned")
    reference = extract_y4m("carphone", out / "ref.y4m", FRAMES)
    video = read_y4m(reference)
    codec = make_codec("learned", {"quality": 2, "device": "cpu", "intra_period": PERIOD})
    bitstream = out / "stream.cln"
    codec.encode(reference, bitstream, ignore)
    torch.set_num_threads(2)  # the codec's default, as the stream records
    sequence = SequenceEncoder(FrameCoder(load_model(builtin_weights()).net, torch.device("cpu")), 2, PERIOD)
    recon = []
    for index in range(FRAMES):
        sequence.encode(video.frame_planes(index))
        recon.append(crop(sequence.reference, video.width, video.height))  # type: ignore[arg-type]
    return bitstream, recon, video


@pytest.mark.slow
def test_a_32_frame_p_chain_decoded_alone_in_a_fresh_process_is_the_encoders_reconstruction(
    encoded: tuple[Path, list, Video], tmp_path: Path
) -> None:
    bitstream, recon, _ = encoded
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from fractions import Fraction\n"
        "from codeclab.worker.codecs import StreamHeader, make_codec\n"
        "codec = make_codec('learned', {'quality': 2, 'device': 'cpu', 'threads': int(sys.argv[3])})\n"
        "video = codec.decode(Path(sys.argv[1]), StreamHeader(0, 0, 0, Fraction(1)), lambda n: None)\n"
        "np.savez(sys.argv[2], y=video.y, u=video.u, v=video.v)\n"
    )
    # A decoder set to another thread count still decodes with the encoder's, which the stream records: the
    # order of float sums can move a sample by one level, and a P-chain would carry that from frame to frame.
    for threads in (2, 1):
        out = tmp_path / f"decoded{threads}.npz"
        subprocess.run([sys.executable, "-c", script, str(bitstream), str(out), str(threads)], check=True, cwd=REPO)
        decoded = np.load(out)
        for index, planes in enumerate(recon):
            for name, plane in zip("yuv", planes, strict=True):
                assert np.array_equal(decoded[name][index], plane), (threads, index, name)


def test_the_p_chain_holds_its_quality_along_a_group(encoded: tuple[Path, list, Video]) -> None:
    """Each P-frame's error is its own residual's quantisation (ADR 0024), so errors do not add up along the
    chain: no P-frame of the group is more than 1 dB (PSNR-Y) below the first one."""
    _, recon, video = encoded
    psnrs = [plane_psnr(video.frame_planes(i)[0], recon[i][0]) for i in range(PERIOD)]
    assert min(psnrs[1:]) > psnrs[1] - 1.0, [round(p, 2) for p in psnrs]


def test_p_frames_cost_a_fraction_of_an_i_frame(encoded: tuple[Path, list, Video]) -> None:
    info, payloads = read_stream(encoded[0].read_bytes())
    assert (info.intra_period, info.threads, info.frames) == (PERIOD, 2, FRAMES)
    sizes = [len(p) for p in payloads]
    intra = (sizes[0] + sizes[PERIOD]) / 2
    inter = np.mean(sizes[1:PERIOD])
    assert inter < 0.5 * intra, sizes


def test_a_job_loads_the_weights_once_for_encode_and_decode(carphone_y4m: Path, tmp_path: Path) -> None:
    write_y4m(read_y4m(carphone_y4m, count=2), tmp_path / "ref.y4m")
    load_model.cache_clear()
    codec = make_codec("learned", {"quality": 2, "device": "cpu"})
    codec.prepare()  # the worker times this as setup_s
    loaded = load_model.cache_info().misses
    codec.encode(tmp_path / "ref.y4m", tmp_path / "stream.cln", ignore)
    codec.decode(tmp_path / "stream.cln", StreamHeader(176, 144, 2, Fraction(30)), ignore)
    assert loaded == 1 and load_model.cache_info().misses == 1


def test_a_damaged_or_foreign_stream_is_a_codec_failure_not_garbage(
    encoded: tuple[Path, list, Video], tmp_path: Path
) -> None:
    bitstream, _, _ = encoded
    codec = make_codec("learned", {"quality": 2})
    header = StreamHeader(176, 144, FRAMES, 1)
    data = bitstream.read_bytes()
    damaged = {
        "truncated": (data[:-50], "truncated or damaged"),
        "other weights": (data[:8] + bytes(4) + data[12:], r"made by weights 00000000, but this decoder has"),
        "no such quality": (data[:4] + bytes([9]) + data[5:], "says quality 9, and its weights have 1 to 6"),
        "no magic": (b"CLN1" + data[4:], "no CLN2 magic"),
        "zero threads": (data[:7] + bytes([0]) + data[8:], "truncated or damaged"),  # byte 7: the encoder's threads
        "255 threads": (data[:7] + bytes([255]) + data[8:], "truncated or damaged"),
        "huge frames": (data[:12] + (65535).to_bytes(2, "little") * 2 + data[16:], r"says 65535x65535, and the clip"),
    }
    for name, (content, message) in damaged.items():
        path = tmp_path / f"{name}.cln"
        path.write_bytes(content)
        with pytest.raises(CodecFailure, match=message):
            codec.decode(path, header, ignore)


def test_more_quality_costs_more_bits_and_gives_more_psnr(carphone_y4m: Path, tmp_path: Path) -> None:
    reference = read_y4m(carphone_y4m, count=3)
    write_y4m(reference, tmp_path / "ref.y4m")
    sizes, psnrs = [], []
    for quality in range(1, QUALITIES + 1):
        codec = make_codec("learned", {"quality": quality})
        bitstream = tmp_path / f"q{quality}.cln"
        codec.encode(tmp_path / "ref.y4m", bitstream, ignore)
        decoded = codec.decode(bitstream, StreamHeader.of(reference), ignore)
        sizes.append(bitstream.stat().st_size)
        psnrs.append(np.mean([plane_psnr(r, d) for r, d in zip(reference.y, decoded.y, strict=True)]))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    assert psnrs == sorted(psnrs), psnrs
    assert psnrs[0] > 24, "even the lowest rate point is a recognisable picture"


# --- the networks ----------------------------------------------------------------------


def test_an_untrained_network_is_the_orthonormal_block_dct_of_an_independent_implementation() -> None:
    """Training starts from a working transform codec (ADR 0024): the linear analysis is scipy's 8x8 DCT of each
    luma block and 4x4 DCT of each chroma block, the branches add nothing, and the synthesis inverts it."""
    from scipy.fft import dctn

    net = VideoNet(Architecture(n=8, qualities=3)).eval()
    rng = np.random.default_rng(7)
    y, u, v = (torch.from_numpy(rng.random(shape, dtype=np.float32))[None] for shape in ((16, 24), (8, 12), (8, 12)))
    packed = pack_yuv420(y, u, v)
    with torch.no_grad():
        latents = net.intra.analyse(packed)[0].numpy()
        back = net.intra.synthesise(torch.from_numpy(latents)[None])
        residual = net.inter.synthesise(net.inter.analyse(packed, packed * 0.5), packed * 0.5)
    centred = y[0].numpy() - 0.5
    luma_block = dctn(centred[8:16, 16:24], norm="ortho")
    assert np.allclose(latents[:64, 1, 2].reshape(8, 8), luma_block, atol=1e-5)
    chroma_block = dctn(v[0].numpy()[4:8, 0:4] - 0.5, norm="ortho")
    assert np.allclose(latents[80:, 1, 0].reshape(4, 4), chroma_block, atol=1e-5)
    assert torch.allclose(back, packed, atol=1e-5)
    assert torch.allclose(residual, packed, atol=1e-5), "prediction + residual gives the frame back"
    gains = initial_log_gains(3).exp()
    assert torch.all(gains[1:] > gains[:-1]), "higher levels quantise finer"


# --- the shipped weights ---------------------------------------------------------------


def test_shipped_weights_are_one_small_safetensors_file_that_says_how_it_was_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sorted(WEIGHTS_DIR.iterdir()) == [BUILTIN], "only the shipped file lives there"
    assert BUILTIN.stat().st_size <= 20 * 2**20

    def no_pickle(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("weights must not be unpickled")

    monkeypatch.setattr(torch, "load", no_pickle)
    load_model.cache_clear()
    model = load_model(builtin_weights())
    record = model.metadata
    assert model.qualities == QUALITIES == len(record["lambdas"])
    assert record["steps"] >= 1000 and record["seed"] == 20261130 and record["max_frames"] is None
    sittings = record["sittings"]
    assert sittings[0]["first_step"] == 1 and sittings[-1]["last_step"] == record["steps"]
    assert all(a["last_step"] + 1 == b["first_step"] for a, b in itertools.pairwise(sittings))
    assert record["train_seconds"] == pytest.approx(sum(s["seconds"] for s in sittings), abs=0.2)
    header_length = int.from_bytes(BUILTIN.read_bytes()[:8], "little")
    header = json.loads(BUILTIN.read_bytes()[8 : 8 + header_length])
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")


# --- the worker and training -----------------------------------------------------------


@pytest.mark.slow
def test_the_worker_records_the_device_weights_and_temporal_coding(tmp_path: Path) -> None:
    codec = {"name": "learned", "params": {"quality": 1, "intra_period": 4}}
    spec = {"name": "learned-q1", "source": {"clip": "builtin:carphone", "frames": 2}, "codec": codec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "codeclab.worker", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out")]
    subprocess.run([*cmd, "--no-vmaf"], check=True, cwd=REPO, capture_output=True)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "SUCCEEDED"
    assert result["resources"]["device"] == "cpu"
    codec = result["conditions"]["codec"]
    assert codec["weights"]["fingerprint"] == load_model(builtin_weights()).fingerprint.hex()
    assert codec["weights"]["lambda"] == load_model(builtin_weights()).metadata["lambdas"][0]
    assert codec["temporal_coding"].startswith("intra period 4; P-frames")
    assert "no RGB conversion" in codec["colour_conversion"]
    assert result["metrics"]["bpp"] == (tmp_path / "out" / "bitstream.cln").stat().st_size * 8 / (176 * 144 * 2)


TINY = Architecture(n=8, qualities=3)


def _train(tmp_path: Path, name: str, stop_after: int | None = None) -> Path | None:
    from codeclab.training.trainer import TrainConfig, train

    config = TrainConfig(steps=4, batch=2, max_frames=3, arch=TINY)
    done: list[int] = []

    def count(report: object) -> None:
        done.append(1)

    return train(
        config, tmp_path / f"{name}.safetensors", tmp_path / f"{name}.ckpt", count,
        lambda: stop_after is not None and len(done) >= stop_after,
    )  # fmt: skip


@pytest.mark.slow
def test_training_resumed_from_its_checkpoint_writes_the_same_weights_as_an_unbroken_run(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    unbroken = _train(tmp_path, "unbroken")
    assert _train(tmp_path, "resumed", stop_after=2) is None, "stopped: no weights yet"
    assert not (tmp_path / "resumed.safetensors").exists() and (tmp_path / "resumed.ckpt").exists()
    resumed = _train(tmp_path, "resumed")
    assert unbroken is not None and resumed is not None
    a, b = load_file(str(unbroken)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = load_model(resumed).metadata
    assert [(s["first_step"], s["last_step"]) for s in record["sittings"]] == [(1, 2), (3, 4)]
    assert record["steps"] == 4 and record["max_frames"] == 3 and record["lambdas"][:1] == [0.002]
    assert record["train_sources"][0] == {"clip": "builtin:bikes", "start": 0, "frames": 3}
    assert [(s["first_step"], s["last_step"]) for s in load_model(unbroken).metadata["sittings"]] == [(1, 4)]


@pytest.mark.slow  # loads a few frames of each training source and searches their vectors
def test_a_p_crops_training_prediction_is_the_codecs_own_compensation_at_that_place() -> None:
    from codeclab.training.data import PATCH, PatchSampler, load_training_data, predictions

    videos, inter = load_training_data(4)
    batch = PatchSampler(videos, inter, seed=1).inter_batch(6)
    # the references as they are (a perfect reconstruction): the prediction must be the full frame's
    predicted = predictions(batch.references, batch.vectors)
    replay = PatchSampler(videos, inter, seed=1)  # the same draws, to know where each crop came from
    for index in range(6):
        clip_index, frame = replay.pairs[replay.rng.integers(len(replay.pairs))]
        clip = inter[clip_index]
        top = 16 * int(replay.rng.integers((clip.video.height - PATCH) // 16 + 1))
        left = 16 * int(replay.rng.integers((clip.video.width - PATCH) // 16 + 1))
        whole = compensate(clip.video.frame_planes(frame - 1), clip.vectors[frame - 1])
        got = unpack_yuv420(predicted[index : index + 1].mul(255).round().to(torch.uint8))
        for plane, want, scale in zip(got, whole, (1, 2, 2), strict=True):
            area = want[top // scale : (top + PATCH) // scale, left // scale : (left + PATCH) // scale]
            assert np.array_equal(plane[0].numpy(), area), (index, top, left)


def test_training_and_evaluation_frames_are_disjoint() -> None:
    from codeclab.training.data import EVAL_SOURCES, INTER_SOURCES, TRAIN_SOURCES, frame_ranges

    train, evaluation = frame_ranges(TRAIN_SOURCES), frame_ranges(EVAL_SOURCES)
    for clip, frames in evaluation.items():
        assert not frames & train.get(clip, set()), clip
    assert evaluation == {"builtin:bbb": set(range(32)), "builtin:carphone": set(range(120))}
    assert set(map(str, INTER_SOURCES)) <= set(map(str, TRAIN_SOURCES))

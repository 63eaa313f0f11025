"""The learned codec's own weights: named in the spec by URI and sha256, checked before loading; training
never writes the shipped weights unless told to."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest
import torch
from click.testing import CliRunner
from moto import mock_aws

from codeclab.cli import cli
from codeclab.experiments import SpecError, validate_spec
from codeclab.worker.codecs import make_codec
from codeclab.worker.codecs.learned.model import Architecture, VideoNet
from codeclab.worker.codecs.learned.weights import WEIGHTS_DIR, builtin_weights, read_record, save_model
from codeclab.worker.errors import InvalidInput, InvalidSpec
from codeclab.worker.packages.fetch import fetch_checked

from ..conftest import REPO


def own_weights(tmp_path: Path) -> tuple[Path, str]:
    """A weights file outside the source tree: a copy of the shipped one (a trained file has the same shape)."""
    mine = Path(shutil.copyfile(builtin_weights(), tmp_path / "mine.safetensors"))
    return mine, hashlib.sha256(mine.read_bytes()).hexdigest()


def learned(quality: int, uri: str, sha256: str) -> dict[str, object]:
    return {"name": "learned", "params": {"quality": quality, "weights": {"uri": uri, "sha256": sha256}}}


def spec(codec: dict[str, object]) -> dict[str, object]:
    return {"name": "own-weights", "source": {"clip": "builtin:carphone", "frames": 1}, "codec": codec}


def test_a_file_whose_hash_is_not_the_specs_is_refused_before_it_is_loaded(tmp_path: Path) -> None:
    mine, digest = own_weights(tmp_path)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    codec = make_codec("learned", {"quality": 1, "weights": {"uri": str(mine), "sha256": wrong}})
    with pytest.raises(InvalidSpec, match=rf"\$\.codec\.params\.weights\.sha256: .* has sha256 {digest}, and the spec"):
        codec.prepare()


def test_a_quality_beyond_the_files_levels_names_the_levels_it_has(tmp_path: Path) -> None:
    three_levels = tmp_path / "three.safetensors"
    save_model(VideoNet(Architecture(n=8, qualities=3)), {"steps": 0}, three_levels)
    digest = hashlib.sha256(three_levels.read_bytes()).hexdigest()
    codec = make_codec("learned", {"quality": 5, "weights": {"uri": str(three_levels), "sha256": digest}})
    with pytest.raises(InvalidSpec, match=r"\$\.codec\.params\.quality: .* have quality levels 1 to 3, .* says 5"):
        codec.prepare()


def test_a_missing_file_names_the_field(tmp_path: Path) -> None:
    codec = make_codec(
        "learned", {"quality": 1, "weights": {"uri": str(tmp_path / "no.safetensors"), "sha256": "a" * 64}}
    )
    with pytest.raises(InvalidSpec, match=r"\$\.codec\.params\.weights\.uri: cannot read .*no\.safetensors"):
        codec.prepare()


def test_the_spec_checks_the_shape_and_the_api_takes_weights_under_the_codecs_prefix_only(tmp_path: Path) -> None:
    mine, digest = own_weights(tmp_path)
    with pytest.raises(
        SpecError, match=r"\$\.codec\.params\.weights\.sha256: \"ABC\" is not valid; expected the file's sha256"
    ):
        validate_spec(spec(learned(1, str(mine), "ABC")))
    with pytest.raises(
        SpecError, match=r"\$\.codec\.params\.weights\.uri: .* expected a \.safetensors file under s3://"
    ):
        validate_spec(spec(learned(1, str(tmp_path / "model.pt"), digest)))
    with pytest.raises(SpecError, match=r"\$\.codec\.params\.weights\.uri: the API takes weights files under s3://art"):
        validate_spec(spec(learned(1, str(mine), digest)), package_bucket="artifacts")
    inside = learned(1, "s3://artifacts/codecs/mine.safetensors", digest)
    checked = validate_spec(spec(inside), package_bucket="artifacts").document["codec"]
    assert checked["params"]["weights"] == inside["params"]["weights"]  # type: ignore[index]
    assert validate_spec(spec(learned(1, str(mine), digest)), package_bucket="artifacts", local_packages=True)


def test_weights_on_s3_are_fetched_into_the_cache_by_hash_and_checked(tmp_path: Path) -> None:
    mine, digest = own_weights(tmp_path)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        s3.put_object(Bucket="artifacts", Key="codecs/mine.safetensors", Body=mine.read_bytes())
        uri = "s3://artifacts/codecs/mine.safetensors"
        fetched = fetch_checked(uri, digest, "$.codec.params.weights.uri", tmp_path / "cache", s3)
        assert fetched.name == f"{digest}.safetensors" and fetched.read_bytes() == mine.read_bytes()
        s3.put_object(Bucket="artifacts", Key="codecs/mine.safetensors", Body=b"replaced")
        assert fetch_checked(uri, digest, "f", tmp_path / "cache", s3) == fetched  # the checked copy, by hash
        with pytest.raises(InvalidSpec, match=r"f\.sha256: .* has sha256"):
            fetch_checked(uri, "b" * 64, "f.uri", tmp_path / "cache", s3)
        with pytest.raises(InvalidSpec, match=r"f\.uri: cannot read s3://artifacts/codecs/gone"):
            fetch_checked("s3://artifacts/codecs/gone.safetensors", "c" * 64, "f.uri", tmp_path / "cache", s3)
    assert [p.name for p in (tmp_path / "cache" / "files").iterdir()] == [fetched.name], "no partial file is left"


@pytest.mark.slow  # two worker runs with torch
def test_own_weights_run_through_the_worker_and_the_result_names_them(tmp_path: Path) -> None:
    mine, digest = own_weights(tmp_path)
    results = {}
    for name, codec in {
        "shipped": {"name": "learned", "params": {"quality": 1}},
        "own": learned(1, str(mine), digest),
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(spec(codec)))
        out = ["--out", str(tmp_path / name), "--no-vmaf", "--quiet"]
        command = [sys.executable, "-m", "codeclab.worker", str(tmp_path / f"{name}.json"), *out]
        subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
        results[name] = json.loads((tmp_path / name / "result.json").read_text())
    weights = results["own"]["conditions"]["codec"]["weights"]
    assert weights["source"] == str(mine) and weights["sha256"] == digest
    assert results["shipped"]["conditions"]["codec"]["weights"]["source"] == "built-in"
    same = (tmp_path / "own" / "bitstream.cln").read_bytes() == (tmp_path / "shipped" / "bitstream.cln").read_bytes()
    assert same, "the same weights from another place make the same stream"


def test_train_writes_only_a_new_out_file_unless_told_to_replace_the_shipped_weights(tmp_path: Path) -> None:
    shipped = {p.name: p.stat().st_mtime_ns for p in WEIGHTS_DIR.iterdir()}
    runner = CliRunner()
    one_step = ["train", "--steps", "1"]
    bare = runner.invoke(cli, one_step)
    assert bare.exit_code == 2 and "give --out FILE (your weights), or --replace-builtin" in bare.output
    both = runner.invoke(cli, [*one_step, "--out", str(tmp_path / "a"), "--replace-builtin"])
    assert both.exit_code == 2
    (tmp_path / "taken.safetensors").write_bytes(b"mine")
    taken = runner.invoke(cli, [*one_step, "--out", str(tmp_path / "taken.safetensors")])
    assert taken.exit_code == 2 and "never overwrites" in taken.output
    assert (tmp_path / "taken.safetensors").read_bytes() == b"mine"
    assert {p.name: p.stat().st_mtime_ns for p in WEIGHTS_DIR.iterdir()} == shipped


def test_a_file_that_is_not_learned_weights_is_named_as_such(tmp_path: Path) -> None:
    from codeclab.worker.codecs.learned.weights import read_record

    (tmp_path / "x.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(InvalidInput, match=r"is not a weights file of the learned codec"):
        read_record(tmp_path / "x.safetensors")


def test_weights_of_another_architecture_are_refused_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from codeclab.worker.codecs.learned.weights import load_model

    net = VideoNet(Architecture(n=8, qualities=3))
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    state["intra.g_a.linear.weight"] = torch.zeros(96, 6, 8, 8)  # the shape an older network had there
    record = json.dumps({"n": 8, "hyper": 16, "qualities": 3, "steps": 0})
    save_file(state, str(tmp_path / "old.safetensors"), metadata={"codeclab": record})
    other_shape = r"another version of the learned codec: its networks have another shape .*; train"
    with pytest.raises(InvalidInput, match=other_shape):
        load_model(tmp_path / "old.safetensors")
    older = json.dumps({"n": 8, "m": 96, "qualities": 3, "steps": 0})  # a record from before ADR 0024
    save_file(state, str(tmp_path / "older.safetensors"), metadata={"codeclab": older})
    with pytest.raises(InvalidInput, match=r"another version of the learned codec: its record lacks hyper; train"):
        load_model(tmp_path / "older.safetensors")


def test_a_fifo_or_device_named_like_weights_is_refused_not_read_forever(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.safetensors")  # with no writer: opening it for reading would block
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")  # reading it would never end
    for name in ("pipe.safetensors", "zero.safetensors"):
        outcome: list[BaseException] = []

        def fetch(path: Path = tmp_path / name, seen: list[BaseException] = outcome) -> None:
            try:
                fetch_checked(str(path), "a" * 64, "f.uri", tmp_path / "cache")
            except InvalidSpec as exc:
                seen.append(exc)

        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), f"{name} kept the fetch reading"
        assert len(outcome) == 1 and f"{name} is not a regular file" in str(outcome[0])
    assert list((tmp_path / "cache" / "files").iterdir()) == []


@pytest.mark.slow  # three training processes, each loading a few frames of data
def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    out, checkpoint = tmp_path / "mine.safetensors", tmp_path / "mine.safetensors.ckpt"
    command = [sys.executable, "-m", "codeclab.cli", "train", "--steps", "3", "--batch", "1", "--max-frames", "3",
               "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("loading the training data; the checkpoint is"), first
    proc.send_signal(signal.SIGINT)  # the handler is in place from that line on
    said = first + proc.stdout.read()
    assert proc.wait(timeout=300) == 130, said
    assert "run the same command again to resume" in said and checkpoint.exists() and not out.exists()
    other_seed = subprocess.run([*command, "--seed", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    refusal = " ".join(other_seed.stderr.split())
    assert other_seed.returncode == 2 and "--checkpoint:" in refusal and "'seed': 1" in refusal, refusal
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = read_record(out)
    assert record["steps"] == 3 and record["sittings"][-1]["last_step"] == 3 and record["max_frames"] == 3


def test_a_second_training_on_the_same_checkpoint_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "mine.safetensors"
    with (tmp_path / ".mine.safetensors.ckpt.lock").open("a") as lock:
        fcntl.flock(
            lock, fcntl.LOCK_EX | fcntl.LOCK_NB
        )  # as a running `codeclab train --out mine.safetensors` holds it
        refused = CliRunner().invoke(cli, ["train", "--steps", "1", "--max-frames", "2", "--out", str(out)])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "is in use by another training run" in said, said
    assert not out.exists() and not (tmp_path / "mine.safetensors.ckpt").exists()

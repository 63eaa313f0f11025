"""Codec packages, the format side: the manifest, safe unpacking (attacked), weights hashes, pack, check."""

from __future__ import annotations

import copy
import gzip
import hashlib
import importlib
import io
import json
import shutil
import sys
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest
from click.testing import CliRunner
from moto import mock_aws
from safetensors.numpy import load_file

from codeclab.cli import cli
from codeclab.experiments import SpecError, validate_spec
from codeclab.experiments.codec_package import parse_manifest, read_manifest
from codeclab.worker.packages.manifest import PackageError, resolve_params
from codeclab.worker.packages.pack import pack
from codeclab.worker.packages.unpack import PackageLimits, unpack
from codeclab.worker.sources import builtin_clip_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "codecs" / "blockdct"
MANIFEST: dict[str, Any] = json.loads((EXAMPLE / "codec.json").read_text())


def copy_example(tmp_path: Path) -> Path:
    folder = tmp_path / "blockdct"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def archive_of(members: list[tuple[tarfile.TarInfo, bytes]], tmp_path: Path, name: str = "evil.tar.gz") -> Path:
    """A .tar.gz that starts with the example's codec.json and its files, then the given members."""
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for file in ["codec.json", "basis.safetensors", "blockdct/__init__.py", "blockdct/codec.py"]:
            tar.add(EXAMPLE / file, arcname=file)
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info, data


# --- the example, unpacked, cached and packed -------------------------------------------------------------


def test_a_folder_and_its_archive_unpack_to_the_same_tree_and_a_second_unpack_reuses_the_cache(tmp_path) -> None:
    cache = tmp_path / "cache"
    from_folder = unpack(str(EXAMPLE), cache)
    archive, _ = pack(EXAMPLE, tmp_path)
    from_archive = unpack(str(archive), cache)
    assert from_folder.tree_sha256 == from_archive.tree_sha256
    assert from_folder.manifest == from_archive.manifest == parse_manifest((EXAMPLE / "codec.json").read_bytes())
    assert (from_archive.root / "blockdct" / "transform.py").is_file()
    assert unpack(str(archive), cache).root == from_archive.root
    assert sorted(p.name for p in cache.iterdir()) == sorted([from_folder.root.name, from_archive.root.name])
    assert from_archive.conditions() == {
        "name": "blockdct",
        "version": "0.1",
        "tree_sha256": from_folder.tree_sha256,
        "weights": MANIFEST["weights"],
        "rate_param": "step",
    }


def test_two_workers_unpacking_the_same_package_at_once_both_get_it_whole(tmp_path) -> None:
    archive, _ = pack(EXAMPLE, tmp_path)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: unpack(str(archive), cache), range(8)))
    assert len({r.root for r in results}) == 1 and len({r.tree_sha256 for r in results}) == 1
    assert [p.name for p in cache.iterdir()] == [results[0].root.name]  # no staging folder left behind


def test_pack_is_reproducible_byte_for_byte_and_starts_with_the_manifest(tmp_path) -> None:
    folder = copy_example(tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, digest = pack(folder, tmp_path / "one")
    for path in folder.rglob("*"):
        path.touch()  # new mtimes: none of them reach the archive
    second, again = pack(folder, tmp_path / "two")
    assert first.name == "blockdct-0.1.tar.gz" and first.read_bytes() == second.read_bytes()
    assert digest == again == hashlib.sha256(first.read_bytes()).hexdigest()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert members[0].name == "codec.json"
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    with gzip.open(first) as stream:
        assert stream.read()  # a plain gzip stream
    assert first.read_bytes()[4:8] == b"\0\0\0\0"  # gzip's mtime field


def test_an_s3_package_is_downloaded_into_the_cache_by_hash_and_a_missing_one_is_exit_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    archive, digest = pack(EXAMPLE, tmp_path)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="artifacts")
        s3.put_object(Bucket="artifacts", Key="codecs/blockdct-0.1.tar.gz", Body=archive.read_bytes())
        package = unpack("s3://artifacts/codecs/blockdct-0.1.tar.gz", tmp_path / "cache", s3)
        assert (
            package.root.name == f"archive-{digest}"
            and package.tree_sha256 == unpack(str(EXAMPLE), tmp_path / "c2").tree_sha256
        )
        assert [p.name for p in (tmp_path / "cache").iterdir()] == [package.root.name]  # the download is gone
        with pytest.raises(PackageError, match=r"cannot read s3://artifacts/codecs/missing.tar.gz") as refused:
            unpack("s3://artifacts/codecs/missing.tar.gz", tmp_path / "cache", s3)
        assert refused.value.exit_code == 2
        with pytest.raises(PackageError, match=r"must be a .tar.gz"):
            unpack("s3://artifacts/codecs/blockdct/", tmp_path / "cache", s3)


# --- unpacking, attacked ----------------------------------------------------------------------------------

ATTACKS: dict[str, Callable[[Path], tuple[tarfile.TarInfo, bytes]]] = {
    "dotdot": lambda out: member("../escaped"),
    "nested dotdot": lambda out: member("blockdct/../../escaped"),
    "absolute path": lambda out: member(str(out / "escaped")),
    "symlink out": lambda out: member("blockdct/model.py", tarfile.SYMTYPE, link=str(out / "escaped")),
    "hardlink": lambda out: member("blockdct/model.py", tarfile.LNKTYPE, link="codec.json"),
    "device": lambda out: member("blockdct/null", tarfile.CHRTYPE),
    "fifo": lambda out: member("blockdct/pipe", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_archive_with_an_escape_link_device_or_fifo_is_refused_and_nothing_is_written(tmp_path, attack) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = archive_of([ATTACKS[attack](outside)], tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(PackageError, match="nothing was unpacked"):
        unpack(str(archive), cache)
    assert list(outside.iterdir()) == [] and not (tmp_path / "escaped").exists()
    assert list(cache.iterdir()) == []  # no package, and no staging folder left


@pytest.mark.parametrize("attack", ["dotdot", "absolute path", "symlink out", "hardlink"])
def test_control_the_same_archives_do_escape_or_link_when_extracted_without_the_checks(tmp_path, attack) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = archive_of([ATTACKS[attack](outside)], tmp_path)
    target = tmp_path / "naive" / "extract"
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="fully_trusted")  # what a naive unpacker does
    if attack == "dotdot":
        assert (tmp_path / "naive" / "escaped").is_file()
    elif attack == "absolute path":
        assert (outside / "escaped").is_file()
    elif attack == "symlink out":
        assert (target / "blockdct" / "model.py").resolve() == outside / "escaped"
    else:
        assert (target / "blockdct" / "model.py").stat().st_nlink == 2


def test_a_bomb_over_the_size_or_file_cap_is_refused_before_it_is_written(tmp_path) -> None:
    zeros = member("blockdct/zeros.dat", data=bytes(4 * 1024 * 1024))
    bomb = archive_of([zeros], tmp_path)
    assert bomb.stat().st_size < 64 * 1024  # 4 MiB of zeros compress to a few KiB
    with pytest.raises(PackageError, match="bytes unpacked"):
        unpack(str(bomb), tmp_path / "cache", limits=PackageLimits(max_bytes=1024 * 1024))
    assert list((tmp_path / "cache").iterdir()) == []
    assert unpack(str(bomb), tmp_path / "control").tree_sha256  # control: within the default cap it unpacks
    many = archive_of([member(f"blockdct/f{i}.txt") for i in range(20)], tmp_path, "many.tar.gz")
    with pytest.raises(PackageError, match="more than 10 files"):
        unpack(str(many), tmp_path / "cache", limits=PackageLimits(max_files=10))


def test_a_folder_with_a_symlink_or_hard_link_is_refused(tmp_path) -> None:
    folder = copy_example(tmp_path)
    (folder / "blockdct" / "secret.py").symlink_to("/etc/passwd")
    with pytest.raises(PackageError, match=r"secret.py is a symbolic link"):
        unpack(str(folder), tmp_path / "cache")
    (folder / "blockdct" / "secret.py").unlink()
    (folder / "blockdct" / "again.py").hardlink_to(folder / "blockdct" / "transform.py")
    with pytest.raises(PackageError, match="hard link"):
        unpack(str(folder), tmp_path / "cache")


# --- weights ----------------------------------------------------------------------------------------------


def test_a_tampered_weights_file_is_refused_naming_the_file_and_both_hashes(tmp_path) -> None:
    folder = copy_example(tmp_path)
    weights = folder / "basis.safetensors"
    tampered = bytearray(weights.read_bytes())
    tampered[-1] ^= 1
    weights.write_bytes(bytes(tampered))
    actual = hashlib.sha256(tampered).hexdigest()
    with pytest.raises(PackageError) as refused:
        unpack(str(folder), tmp_path / "cache")
    message = str(refused.value)
    assert "basis.safetensors" in message and actual in message and MANIFEST["weights"]["basis.safetensors"] in message
    assert refused.value.exit_code == 2
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_tampered_archive_member_is_refused_too(tmp_path) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "basis.safetensors").write_bytes(b"not the weights")
    path = tmp_path / "swap.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for file in ["codec.json", "blockdct/__init__.py", "blockdct/codec.py"]:
            tar.add(EXAMPLE / file, arcname=file)
        tar.add(tampered / "basis.safetensors", arcname="basis.safetensors")
    with pytest.raises(PackageError, match=r"does not match codec.json"):
        unpack(str(path), tmp_path / "cache")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: (f / "extra.safetensors").write_bytes(b"{}"), "extra.safetensors is not listed under weights"),
        (lambda f: (f / "basis.safetensors").unlink(), "basis.safetensors is listed in codec.json but missing"),
        (lambda f: (f / "model.pt").write_bytes(b"pickle"), "model.pt: weights must be .safetensors"),
        (lambda f: (f / "blockdct" / "codec.py").unlink(), r"\$.entry: blockdct.codec is not in the package"),
        (lambda f: (f / "codec.json").unlink(), "no codec.json"),
    ],
)
def test_unlisted_missing_or_pickled_weights_and_a_missing_entry_are_refused(tmp_path, change, expected) -> None:
    folder = copy_example(tmp_path)
    change(folder)
    with pytest.raises(PackageError, match=expected):
        unpack(str(folder), tmp_path / "cache")


# --- the manifest -----------------------------------------------------------------------------------------

BAD_FIELDS = [
    ("name", "My Codec"),
    ("version", ""),
    ("entry", "blockdct/codec.py"),
    ("weights", {"../model.safetensors": "0" * 64}),
    ("weights", {"model.pt": "0" * 64}),
    ("weights", {"basis.safetensors": "not-a-hash"}),
    ("params", {"type": "object", "properties": {"step": {"type": "integer", "minimum": "one"}}}),
    ("params", {"type": "object", "properties": {"step": {"type": "integer", "default": "12"}}}),
    ("params", {"type": "array"}),
    ("device", "tpu"),
    ("rate_param", "quality"),
    ("rate_param", 3),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_a_bad_manifest_field_is_refused_naming_the_field(field, value) -> None:
    manifest = {**copy.deepcopy(MANIFEST), field: value}
    with pytest.raises(SpecError) as refused:
        parse_manifest(json.dumps(manifest).encode())
    (problem,) = refused.value.problems
    assert problem.path == f"codec.json $.{field}"


def test_a_manifest_missing_fields_or_with_unknown_ones_says_which() -> None:
    manifest = {k: v for k, v in MANIFEST.items() if k not in ("entry", "weights")} | {"wieghts": {}}
    with pytest.raises(SpecError) as refused:
        parse_manifest(json.dumps(manifest).encode())
    assert [str(p) for p in refused.value.problems] == [
        "codec.json $: unknown field 'wieghts'; valid: name, version, entry, weights, params, device, rate_param",
        "codec.json $.entry: is required",
        "codec.json $.weights: is required",
    ]
    with pytest.raises(SpecError, match="not UTF-8 JSON"):
        parse_manifest(b"{")


def test_the_worker_sees_a_bad_manifest_as_exit_2(tmp_path) -> None:
    folder = copy_example(tmp_path)
    (folder / "codec.json").write_text(json.dumps({**MANIFEST, "device": "tpu"}))
    with pytest.raises(PackageError, match=r"codec.json \$.device") as refused:
        unpack(str(folder), tmp_path / "cache")
    assert refused.value.exit_code == 2


# --- the spec ---------------------------------------------------------------------------------------------


def package_spec(uri: str, **params: Any) -> dict[str, Any]:
    return {
        "name": "pkg",
        "source": {"clip": "builtin:carphone"},
        "codec": {"name": "package", "uri": uri, "params": params},
    }


def test_a_package_spec_gets_the_package_defaults_and_bad_params_name_their_path(tmp_path) -> None:
    assert validate_spec(package_spec(str(EXAMPLE))).document["codec"]["params"] == {"step": 12}
    archive, _ = pack(EXAMPLE, tmp_path)
    with pytest.raises(SpecError) as refused:
        validate_spec(package_spec(str(archive), step=0, stepp=3))
    assert [p.path for p in refused.value.problems] == ["$.codec.params", "$.codec.params.step"]
    assert "blockdct 0.1's params schema" in str(refused.value)
    sweep = {**package_spec(str(EXAMPLE)), "sweep": {"step": [4, 400]}}
    with pytest.raises(
        SpecError, match=r"\$.sweep: point 1 \(package step=400\): \$.codec.params.step: 400 is greater"
    ):
        validate_spec(sweep)
    # the package's own param and x265's, each swept by a key that names its codec
    entries = [package_spec(str(EXAMPLE))["codec"], {"name": "x265"}]
    both = validate_spec({**sweep, "sweep": {"codecs": entries, "package.step": [4, 8], "x265.crf": [30]}})
    assert [point.label for point in both.points] == ["package step=4", "package step=8", "x265 crf=30"]
    assert both.points[1].spec["codec"]["params"] == {"step": 8}


def test_the_worker_checks_params_again_against_the_manifest_it_verified(tmp_path) -> None:
    package = unpack(str(EXAMPLE), tmp_path / "cache")
    assert resolve_params(package.manifest, {}) == {"step": 12}
    with pytest.raises(PackageError, match=r"\$.codec.params.step: 300 is greater than the maximum") as refused:
        resolve_params(package.manifest, {"step": 300})
    assert refused.value.exit_code == 2


def test_a_package_uri_elsewhere_is_refused_and_uri_only_goes_with_package(tmp_path) -> None:
    with pytest.raises(SpecError, match=r"\$.codec.uri: cannot read .*codec.json"):
        validate_spec(package_spec(str(tmp_path / "missing")))
    with pytest.raises(SpecError, match="uri not allowed here"):
        validate_spec({**package_spec(str(EXAMPLE)), "codec": {"name": "x264", "uri": str(EXAMPLE)}})
    unordered = tmp_path / "unordered.tar.gz"
    with tarfile.open(unordered, "w:gz") as tar:
        tar.add(EXAMPLE / "blockdct", arcname="blockdct")
        tar.add(EXAMPLE / "codec.json", arcname="codec.json")
    with pytest.raises(SpecError, match=r"must start with codec.json"):
        read_manifest(str(unordered))
    with pytest.raises(SpecError, match="API takes packages under s3://artifacts/codecs/ only"):
        validate_spec(package_spec(str(EXAMPLE)), package_bucket="artifacts")


def test_allow_imports_goes_with_a_package_or_custom_code_and_nothing_else() -> None:
    codec = {**package_spec(str(EXAMPLE))["codec"], "allow_imports": ["scipy"]}
    checked = validate_spec({**package_spec(str(EXAMPLE)), "codec": codec})
    assert checked.document["codec"]["allow_imports"] == ["scipy"]
    with pytest.raises(SpecError, match=r"allow_imports not allowed here \(only with codec custom or package\)"):
        validate_spec({**package_spec(str(EXAMPLE)), "codec": {"name": "x264", "allow_imports": ["scipy"]}})


# --- the CLI and the example ------------------------------------------------------------------------------


def test_codec_pack_and_the_checks_that_refuse_a_package_before_it_runs(tmp_path) -> None:
    runner = CliRunner()
    packed = runner.invoke(cli, ["codec", "pack", str(EXAMPLE), "--out-dir", str(tmp_path)])
    assert packed.exit_code == 0, packed.output
    archive = tmp_path / "blockdct-0.1.tar.gz"
    assert packed.output.split()[0] == hashlib.sha256(archive.read_bytes()).hexdigest()
    folder = copy_example(tmp_path)
    (folder / "basis.safetensors").write_bytes(b"tampered")
    refused = runner.invoke(cli, ["codec", "check", str(folder)])
    assert refused.exit_code == 2 and "does not match codec.json" in refused.output
    for params, expected in [('{"step": 0}', "$.codec.params.step: 0 is less than the minimum of 1"),
                             ('{"stp": 8}', "('stp' was unexpected)"), ("{step", "--params: not JSON")]:  # fmt: skip
        bad = runner.invoke(cli, ["codec", "check", str(EXAMPLE), "--params", params])
        assert bad.exit_code == 2 and expected in bad.output and "Traceback" not in bad.output, bad.output


def rd_point(output: str) -> dict[str, str]:
    """The RD point table `codec check` prints, as {column: cell}."""
    rows = [line for line in output.splitlines() if line.startswith(("┃", "│"))]
    header, values = ([cell.strip() for cell in row.strip("┃│").replace("┃", "│").split("│")] for row in rows)
    return dict(zip(header, values, strict=True))


def carphone(frames: int) -> dict[str, np.ndarray]:
    """The builtin clip's first frames, decoded here with PyAV, not by the worker's source loader."""
    with av.open(str(builtin_clip_path("carphone"))) as container:
        stream = container.decode(video=0)
        decoded = [next(stream).to_ndarray(format="yuv420p") for _ in range(frames)]
    h, w = decoded[0].shape[0] * 2 // 3, decoded[0].shape[1]
    quarter = h // 4
    return {
        "y": np.stack([f[:h] for f in decoded]),
        "u": np.stack([f[h : h + quarter].reshape(h // 2, w // 2) for f in decoded]),
        "v": np.stack([f[h + quarter :].reshape(h // 2, w // 2) for f in decoded]),
    }


def import_entry(root: Path, entry: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A package's entry module imported in this process, outside any sandbox (its modules leave with the test)."""
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return importlib.import_module(entry)


@pytest.mark.slow  # two trials, each an encoder and a decoder child under every sandbox layer
def test_codec_check_runs_the_example_in_the_sandbox_and_its_rd_point_matches_numpy(tmp_path, monkeypatch) -> None:
    runner = CliRunner()
    checked = runner.invoke(cli, ["codec", "check", str(EXAMPLE)])
    assert checked.exit_code == 0, checked.output
    assert "blockdct 0.1" in checked.output and "basis.safetensors: sha256" in checked.output
    assert "2 frames of builtin:carphone (176x144 yuv420p, 29.97 fps)" in checked.output
    assert "every required layer applied and verified in the encoder and the decoder" in checked.output
    # the same codec, imported and run here, and PSNR by hand: the trial's figures are the package's real ones
    package = unpack(str(EXAMPLE), tmp_path / "cache")
    codec = import_entry(package.root, package.manifest.entry, monkeypatch)
    frames, ctx = carphone(2), _Context(package.root)
    bitstream = codec.encode(frames, {"step": 12}, ctx)
    decoded = codec.decode(bitstream, {"width": 176, "height": 144, "frames": 2, "fps": 30000 / 1001}, ctx)
    psnr = {
        name: [
            10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2))
            for a, b in zip(frames[name], decoded[name], strict=True)
        ]
        for name in "yuv"
    }
    psnr_yuv = np.mean([(6 * y + u + v) / 8 for y, u, v in zip(psnr["y"], psnr["u"], psnr["v"], strict=True)])
    point = rd_point(checked.output)
    assert int(point["bytes"]) == len(bitstream)
    assert float(point["bpp"]) == pytest.approx(8 * len(bitstream) / (176 * 144 * 2), abs=5e-5)
    assert float(point["kbps"]) == pytest.approx(8 * len(bitstream) / 1000 / (2 * 1001 / 30000), abs=0.05)
    assert float(point["PSNR-Y"]) == pytest.approx(np.mean(psnr["y"]), abs=0.005)
    assert float(point["PSNR-YUV"]) == pytest.approx(psnr_yuv, abs=0.005)
    assert point["device"] == "cpu" and float(point["encode s"]) > 0
    archive, _ = pack(EXAMPLE, tmp_path)
    from_archive = runner.invoke(cli, ["codec", "check", str(archive)])
    assert from_archive.exit_code == 0, from_archive.output
    assert {k: v for k, v in rd_point(from_archive.output).items() if not k.endswith(" s")} == {
        k: v for k, v in point.items() if not k.endswith(" s")
    }


@pytest.mark.slow  # a real encoder child under every sandbox layer
def test_codec_check_shows_a_package_exception_as_codec_error_with_the_users_traceback(tmp_path) -> None:
    folder = copy_example(tmp_path)
    codec_py = folder / "blockdct" / "codec.py"
    text = codec_py.read_text()
    first = '    basis, step = _basis(ctx), int(params["step"])\n'
    codec_py.write_text(text.replace(first, first + "    step = step / 0\n"))
    line = codec_py.read_text().splitlines().index("    step = step / 0") + 1
    failed = CliRunner().invoke(cli, ["codec", "check", str(folder)])
    assert failed.exit_code == 2, failed.output
    assert "CODEC_ERROR: codec package encoder raised an exception" in failed.output
    assert f'File "blockdct/codec.py", line {line}, in encode' in failed.output and "ZeroDivisionError" in failed.output
    assert "codeclab/" not in failed.output and "child.py" not in failed.output  # the user's frames only


@pytest.mark.slow  # a real encoder child under every sandbox layer
def test_codec_check_names_the_limit_a_package_runs_into_and_how_to_raise_it(tmp_path) -> None:
    folder = copy_example(tmp_path)
    codec_py = folder / "blockdct" / "codec.py"
    first = '    basis, step = _basis(ctx), int(params["step"])\n'
    codec_py.write_text(codec_py.read_text().replace(first, first + "    while True:\n        step += 1\n"))
    failed = CliRunner().invoke(cli, ["codec", "check", str(folder), "--limits", '{"cpu_seconds": 1}'])
    assert failed.exit_code == 2, failed.output
    assert "SANDBOX_VIOLATION: codec package encoder used more than its 1 CPU seconds" in failed.output
    assert """--limits '{"cpu_seconds": N}'""" in failed.output and "Traceback" not in failed.output


STEAL_THE_CLIP = """
import typing
os = typing.sys.modules["os"]


def steal():
    fd = os.open(CLIP, os.O_RDONLY)
    return os.read(fd, 64)


def decode(bitstream, header, ctx):
    steal()
"""


@pytest.mark.slow  # real encoder and decoder children under every sandbox layer
def test_codec_check_contains_a_decoder_that_reads_the_clip_and_the_control_shows_the_read_works(
    tmp_path, monkeypatch
) -> None:
    clip = builtin_clip_path("carphone")
    folder = copy_example(tmp_path)
    codec_py = folder / "blockdct" / "codec.py"
    text = codec_py.read_text()
    codec_py.write_text(text[: text.index("def decode(")] + STEAL_THE_CLIP.replace("CLIP", repr(str(clip))))
    failed = CliRunner().invoke(cli, ["codec", "check", str(folder)])
    assert failed.exit_code == 2, failed.output
    assert "SANDBOX_VIOLATION: codec package decoder: the codec reached outside its sandbox" in failed.output
    assert "Permission denied" in failed.output and "Traceback" not in failed.output
    # control: outside the sandbox the same function reads the clip's bytes
    stolen = import_entry(folder, "blockdct.codec", monkeypatch).steal()
    assert stolen == clip.read_bytes()[:64]


class _Context:
    """What the sandbox's ctx gives an entry module, enough to run the example outside the sandbox."""

    device = "cpu"

    def __init__(self, root: Path) -> None:
        self.root, self.done = root, 0

    def weights(self, name: str) -> dict[str, np.ndarray]:
        return load_file(self.root / name)

    def progress(self, frames_done: int) -> None:
        self.done = frames_done


def test_the_example_package_round_trips_two_frames(tmp_path, monkeypatch) -> None:
    package = unpack(str(EXAMPLE), tmp_path / "cache")
    codec = import_entry(package.root, package.manifest.entry, monkeypatch)
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(0, 3, (2, 18, 22)), axis=2).astype(np.uint8)
    frames = {"y": smooth, "u": smooth[:, ::2, ::2].copy(), "v": smooth[:, 1::2, 1::2].copy()}
    ctx = _Context(package.root)
    bitstream = codec.encode(frames, {"step": 2}, ctx)
    decoded = codec.decode(bitstream, {"width": 22, "height": 18, "frames": 2, "fps": 25}, ctx)
    assert {k: v.shape for k, v in decoded.items()} == {k: v.shape for k, v in frames.items()}
    assert np.abs(decoded["y"].astype(int) - frames["y"]).max() <= 3 and ctx.done == 2

"""The built-in learned codec as a codec package: exported from its own modules, run in the sandbox, same bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from codeclab.cli import cli
from codeclab.worker.codecs.learned import export as export_module
from codeclab.worker.codecs.learned.export import EXTRA_IMPORTS, MODULES, export_learned, portable_source
from codeclab.worker.codecs.learned.model import Architecture, VideoNet
from codeclab.worker.codecs.learned.weights import builtin_weights, save_model
from codeclab.worker.errors import SandboxViolation
from codeclab.worker.hashing import sha256_file
from codeclab.worker.packages.manifest import PackageError
from codeclab.worker.packages.unpack import folder_files, tree_sha256
from codeclab.worker.sandbox.static_check import allowed_imports, check_package

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "codecs" / "learnedvideo"


def test_the_example_package_is_exactly_what_export_writes_from_todays_modules_and_weights(tmp_path: Path) -> None:
    fresh = export_learned(builtin_weights(), tmp_path / "learnedvideo").root
    files, stale = folder_files(fresh), "stale: codeclab codec export-learned --replace examples/codecs/learnedvideo"
    assert folder_files(EXAMPLE) == files, stale
    assert tree_sha256(EXAMPLE, files) == tree_sha256(fresh, files), stale


def test_the_package_carries_only_relative_imports_of_its_own_modules_and_names_the_two_extra_libraries() -> None:
    with pytest.raises(SandboxViolation, match=r"import of 'constriction' is not allowed"):
        check_package(EXAMPLE, allowed_imports())
    imported = check_package(EXAMPLE, allowed_imports(EXTRA_IMPORTS))
    assert not any(name.startswith("codeclab") for name in imported)
    for filename in MODULES.values():
        assert "codeclab." not in (EXAMPLE / "learnedvideo" / filename).read_text().split('"""', 2)[-1]


def test_a_module_that_needs_more_of_codeclab_cannot_be_exported() -> None:
    with pytest.raises(PackageError, match=r"imports codeclab\.worker\.errors, which the exported package does not"):
        portable_source("codeclab.worker.codecs.learned.weights")


def test_export_learned_refuses_an_existing_folder_and_a_file_that_is_not_learned_weights(tmp_path: Path) -> None:
    runner = CliRunner()

    def said(result: Result) -> str:  # the console wraps long paths wherever their length puts the edge
        return " ".join(result.output.split())

    (tmp_path / "taken").mkdir()
    taken = runner.invoke(cli, ["codec", "export-learned", str(tmp_path / "taken")])
    assert taken.exit_code == 2 and "exists; choose a new folder, or pass --replace" in said(taken)
    assert list((tmp_path / "taken").iterdir()) == []
    (tmp_path / "plain.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    plain_weights = str(tmp_path / "plain.safetensors")
    plain = runner.invoke(cli, ["codec", "export-learned", str(tmp_path / "p"), "--weights", plain_weights])
    assert plain.exit_code == 2 and "is not a weights file of the learned codec" in said(plain)
    assert "codeclab train --out" in said(plain) and not (tmp_path / "p").exists()
    three_levels = tmp_path / "three.safetensors"
    save_model(VideoNet(Architecture(n=8, qualities=3)), {"steps": 0}, three_levels)
    made = runner.invoke(cli, ["codec", "export-learned", str(tmp_path / "taken"), "--weights", str(three_levels),
                               "--replace"])  # fmt: skip
    assert made.exit_code == 0, made.output
    manifest = json.loads((tmp_path / "taken" / "codec.json").read_text())
    assert manifest["version"] == "0.1.0+" + sha256_file(three_levels)[:12]
    assert list(manifest["weights"]) == ["video.safetensors"]
    params = manifest["params"]["properties"]
    assert (params["quality"]["maximum"], params["quality"]["default"]) == (3, 3)
    assert params["intra_period"]["default"] == 32


def test_an_export_that_lands_at_out_meanwhile_is_never_replaced_without_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "learnedvideo"
    real_write = export_module._write

    def racing_write(*args: object) -> None:
        real_write(*args)  # type: ignore[arg-type]
        out.mkdir()  # a second export, started at the same time, finished first
        (out / "theirs").write_text("theirs")

    monkeypatch.setattr(export_module, "_write", racing_write)
    with pytest.raises(PackageError, match=r"appeared while exporting"):
        export_learned(builtin_weights(), out)
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["learnedvideo"], "no staging folder is left behind"


@pytest.mark.slow  # two worker runs, one of them a sandboxed child loading torch, scipy and constriction twice
def test_run_through_the_sandbox_the_package_writes_the_learned_codecs_bitstream_and_reconstruction(
    tmp_path: Path,
) -> None:
    source = {"clip": "builtin:carphone", "frames": 3}
    params = {"quality": 4, "intra_period": 2}  # I, P, I: both networks
    learned = run_worker(tmp_path / "learned", {"name": "learned", "params": params}, source)
    package = run_worker(
        tmp_path / "package",
        {"name": "package", "uri": str(EXAMPLE), "allow_imports": list(EXTRA_IMPORTS), "params": params},
        source,
    )
    assert (learned / "bitstream.cln").read_bytes() == (package / "bitstream.bin").read_bytes()
    assert (learned / "recon.y4m").read_bytes() == (package / "recon.y4m").read_bytes()
    result = json.loads((package / "result.json").read_text())
    recorded = result["conditions"]["codec"]
    assert recorded["package"]["name"] == "learnedvideo" and recorded["sandbox"]["encoder"]["missing"] == {}
    weights = json.loads((EXAMPLE / "codec.json").read_text())["weights"]
    assert recorded["package"]["weights"] == weights


@pytest.mark.slow
def test_codec_check_runs_the_exported_package_once_its_two_libraries_are_allowed(tmp_path: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(cli, ["codec", "check", str(EXAMPLE)])
    assert refused.exit_code == 2 and "import of 'constriction' is not allowed" in refused.output
    assert "(codec check: --allow-import constriction)" in " ".join(refused.output.split())  # however it wraps
    allowed = [arg for name in EXTRA_IMPORTS for arg in ("--allow-import", name)]
    checked = runner.invoke(cli, ["codec", "check", str(EXAMPLE), *allowed], terminal_width=200)
    assert checked.exit_code == 0, checked.output
    two_frames = {"clip": "builtin:carphone", "frames": 2}
    learned = run_worker(tmp_path / "learned", {"name": "learned", "params": {"quality": 4}}, two_frames)
    size = (learned / "bitstream.cln").stat().st_size
    assert f"│ {size:>5} │" in checked.output  # the RD point's bytes are the learned codec's


@pytest.mark.slow
def test_a_tampered_copy_of_the_example_is_refused_before_anything_runs(tmp_path: Path) -> None:
    copy = shutil.copytree(EXAMPLE, tmp_path / "learnedvideo")
    weights = copy / "video.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    codec = {"name": "package", "uri": str(copy), "allow_imports": list(EXTRA_IMPORTS)}
    out = run_worker(tmp_path / "run", codec, {"clip": "builtin:carphone", "frames": 1}, expect=2)
    error = json.loads((out / "result.json").read_text())["error"]
    assert error["type"] == "INVALID_SPEC" and "video.safetensors" in error["message"]


def run_worker(folder: Path, codec: dict[str, object], source: dict[str, object], expect: int = 0) -> Path:
    folder.mkdir(parents=True)
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"name": folder.name, "source": source, "codec": codec}))
    command = [sys.executable, "-m", "codeclab.worker", str(spec), "--out", str(folder / "out"), "--no-vmaf", "--quiet"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect, proc.stderr[-3000:]
    return folder / "out"

"""The GPU image cannot be built here (no Docker engine), so its Dockerfile is checked as text, and the wheel it
installs is built from what its wheel stage copies and run from outside the checkout."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "gpu_container" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def values(keyword: str) -> list[str]:
    return [value for key, value in instructions() if key == keyword]


def stages() -> list[list[tuple[str, str]]]:
    """Each build stage's instructions, its FROM first."""
    found: list[list[tuple[str, str]]] = []
    for key, value in instructions():
        if key == "FROM":
            found.append([])
        found[-1].append((key, value))
    return found


def test_base_image_is_a_pinned_cuda_runtime() -> None:
    first, *later = [value.split() for value in values("FROM")]
    image, _, tag = first[0].partition(":")
    assert image == "nvidia/cuda"
    assert re.fullmatch(r"\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", tag), tag
    # Every later stage builds on an earlier one, so the image has that one base and nothing else.
    named = {first[-1]} if len(first) == 3 else set()
    for words in later:
        assert words[0] in named, words
        named |= {words[-1]} if len(words) == 3 else set()


def test_the_worker_runs_as_root_so_each_codec_child_gets_a_uid_of_its_own() -> None:
    users = values("USER")
    assert users and users[-1] in {"root", "0"}
    assert "libseccomp2" in " ".join(values("RUN"))


def test_entrypoint_is_the_worker_module() -> None:
    (entrypoint,) = values("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert module == "codeclab.worker"
    assert importlib.util.find_spec(f"{module}.__main__") is not None


def copied_sources(stage: list[tuple[str, str]]) -> list[str]:
    """What a stage copies from the build context (a COPY --from copies from another stage)."""
    return [source for key, value in stage if key == "COPY" and "--from" not in value for source in value.split()[:-1]]


def test_copied_files_exist_and_requirements_are_pinned() -> None:
    for stage in stages():
        for source in copied_sources(stage):
            assert (REPO / source).exists(), source
    assert "-r requirements.txt -c constraints.txt" in " ".join(values("RUN"))
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[\w.\-\[\]]+==[\w.+]+", line), line


def wheel_stage() -> list[tuple[str, str]]:
    (stage,) = [stage for stage in stages() if any(key == "RUN" and "pip wheel" in value for key, value in stage)]
    return stage


def test_the_image_installs_the_wheel_not_the_source_tree() -> None:
    runs = values("RUN")
    assert not [run for run in runs if re.search(r"pip install\b.*\s-e\s", run)], "an editable install"
    final = stages()[-1]
    assert set(copied_sources(final)) == {"requirements.txt", "constraints.txt"}  # the code comes as the wheel
    assert any("pip install --no-deps /wheels/codeclab-*.whl" in value for key, value in final if key == "RUN")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from exactly what the Dockerfile's wheel stage copies."""
    context, out = tmp_path_factory.mktemp("context"), tmp_path_factory.mktemp("wheels")
    for source in copied_sources(wheel_stage()):
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / source, context / source)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), "."]
    done = subprocess.run(build, cwd=context, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("codeclab-*.whl")
    return built


@pytest.mark.slow  # builds the wheel (seconds): the full suite checks it
def test_the_wheel_carries_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "codeclab/py.typed",
        "codeclab/demo-sweep.json",
        "codeclab/experiments/experiment.schema.json",
        "codeclab/worker/codecs/learned/weights/video.safetensors",
    }
    assert shipped <= names
    # the package and its metadata, nothing else of the checkout (tests, stacks, lambdas)
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"codeclab"}


@pytest.mark.slow
def test_the_installed_wheel_validates_a_spec_from_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = """
import json, sys
from importlib import resources
import codeclab
from codeclab.experiments import validate_spec
from codeclab.experiments.schema import SCHEMA_FILE, load_schema
validate_spec(json.loads(sys.argv[1]))
validate_spec(json.loads(resources.files("codeclab").joinpath("demo-sweep.json").read_text()))
weights = resources.files("codeclab.worker.codecs.learned") / "weights" / "video.safetensors"
print(json.dumps([codeclab.__file__, str(SCHEMA_FILE), str(weights), load_schema()["$id"]]))
"""
    spec = (REPO / "examples" / "x264.json").read_text()
    # PYTHONPATH holds the unpacked wheel alone: nothing of the checkout, which is not an ancestor of the cwd either.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-c", script, spec], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    package, schema, weights, schema_id = json.loads(done.stdout)
    assert Path(package) == site / "codeclab" / "__init__.py"
    assert Path(schema) == site / "codeclab" / "experiments" / "experiment.schema.json"
    assert Path(weights).is_file() and Path(weights).is_relative_to(site)
    assert schema_id.endswith("experiment.schema.json")

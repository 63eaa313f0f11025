"""The GPU image cannot be built here (no Docker engine), so its Dockerfile is checked as text."""

from __future__ import annotations

import importlib.util
import json
import re

from tests.conftest import REPO

DOCKERFILE = REPO / "gpu_container" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def values(keyword: str) -> list[str]:
    return [value for key, value in instructions() if key == keyword]


def test_base_image_is_a_pinned_cuda_runtime() -> None:
    (base,) = values("FROM")
    image, _, tag = base.partition(":")
    assert image == "nvidia/cuda"
    assert re.fullmatch(r"\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", tag), tag


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


def test_copied_files_exist_and_requirements_are_pinned() -> None:
    for value in values("COPY"):
        *sources, _target = value.split()
        for source in sources:
            assert (REPO / source).exists(), source
    assert "-r requirements.txt -c constraints.txt" in " ".join(values("RUN"))
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[\w.\-\[\]]+==[\w.+]+", line), line

"""The Lambda bundle and the worker image's build context, as synthesis staged them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.compute import DOCKERFILE, REPO, docker_context_excludes
from stacks.lambda_bundle import BundleError, check_platform, distributions

MAX_BUNDLE_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def lambda_asset(synth) -> Path:
    keys = {f["Properties"]["Code"]["S3Key"] for f in synth.of_type("AWS::Lambda::Function").values()}
    (key,) = keys  # one asset shared by all five handlers
    return synth.outdir / f"asset.{key.removesuffix('.zip')}"


@pytest.fixture(scope="module")
def image_context(synth) -> Path:
    manifest = json.loads((synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["dockerFile"] == DOCKERFILE
    return synth.outdir / image["source"]["directory"]


def test_lambda_bundle_holds_handlers_package_schema_and_jsonschema(lambda_asset):
    for name in ("create_record", "record_result", "mark_failed", "aggregate_sweep", "reconcile", "api"):
        assert (lambda_asset / f"{name}.py").is_file(), name
    assert (lambda_asset / "codeclab" / "__init__.py").is_file()
    assert (lambda_asset / "codeclab" / "experiments" / "spec.py").is_file()
    assert (lambda_asset / "codeclab" / "experiments" / "experiment.schema.json").is_file()
    for package in ("jsonschema", "jsonschema_specifications", "referencing", "rpds", "attr", "attrs"):
        assert (lambda_asset / package / "__init__.py").is_file(), package


def test_lambda_bundle_leaves_out_the_worker_tests_and_caches(lambda_asset):
    for absent in ("codeclab/worker", "tests", ".venv", "lambdas", "stacks", "gpu_container"):
        assert not (lambda_asset / absent).exists(), absent
    files = [p for p in lambda_asset.rglob("*") if p.is_file()]
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc"]
    assert sum(p.stat().st_size for p in files) < MAX_BUNDLE_BYTES


def test_lambda_bundle_imports_its_own_jsonschema_and_validates_a_spec(lambda_asset):
    # The bundle first on sys.path, as /var/task is in Lambda: rpds' compiled module must load from it, and
    # spec.py must read the schema from the bundle's own package.
    script = f"""
import json, sys
sys.path.insert(0, {str(lambda_asset)!r})
import jsonschema, rpds
from codeclab.experiments import schema, spec
spec.validate_spec(json.load(open({str(REPO / "examples" / "x264.json")!r})))
print(json.dumps([jsonschema.__file__, rpds.__file__, spec.__file__, str(schema.SCHEMA_FILE)]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    assert all(path.startswith(str(lambda_asset)) for path in json.loads(done.stdout))


def test_bundle_follows_jsonschemas_requirements():
    names = {d.metadata["Name"].lower().replace("_", "-") for d in distributions()}
    assert {"jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "attrs"} <= names
    assert "boto3" not in names  # the Lambda runtime has it


class FakeDistribution:
    def __init__(self, wheel: str) -> None:
        self.wheel = wheel
        self.metadata = {"Name": "rpds-py"}

    def read_text(self, name: str) -> str:
        assert name == "WHEEL"
        return self.wheel


def test_a_compiled_wheel_for_another_platform_is_refused():
    mac = FakeDistribution("Root-Is-Purelib: false\nTag: cp311-cp311-macosx_11_0_arm64\n")
    with pytest.raises(
        BundleError, match=re.escape("synthesize on linux x86_64 with Python 3.11: rpds-py is compiled")
    ):
        check_platform(mac)
    check_platform(FakeDistribution("Root-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_17_x86_64\n"))
    check_platform(FakeDistribution("Root-Is-Purelib: true\nTag: py3-none-any\n"))


def test_image_context_is_what_the_dockerfile_copies(image_context):
    excludes = docker_context_excludes(REPO, DOCKERFILE)
    assert excludes[0] == "*"
    wheel_inputs = {"!pyproject.toml", "!README.md", "!codeclab"}
    assert {"!gpu_container/Dockerfile", "!requirements.txt", "!constraints.txt", *wheel_inputs} <= set(excludes)
    assert (image_context / DOCKERFILE).is_file()
    assert (image_context / "codeclab" / "worker" / "entrypoint.py").is_file()
    for absent in (".venv", ".git", "tests", "runs", "stacks", "lambdas", "cdk.out"):
        assert not (image_context / absent).exists(), absent

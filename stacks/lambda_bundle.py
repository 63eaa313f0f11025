"""The Lambda code asset, bundled locally (never with Docker): handlers, codeclab.experiments, the schema, jsonschema.

The handlers run `codeclab.experiments`, which validates specs with jsonschema. The Lambda runtime has boto3 and the
Powertools layer has Powertools, but nothing ships jsonschema, so its installed files (and those of everything it
needs) are copied from this environment. One of them, rpds-py, is compiled, which ties synthesis to linux x86_64
with Python 3.11, the Lambda's own platform.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
HANDLERS_DIR = "lambdas"
# Relative to the repository root.
SOURCE_GLOBS = (
    f"{HANDLERS_DIR}/*.py",
    "codeclab/__init__.py",
    "codeclab/experiments/**/*.py",
    "codeclab/experiments/experiment.schema.json",  # package data: spec.py reads it with importlib.resources
)
ROOT_DISTRIBUTIONS = ("jsonschema",)
PLATFORM_TAG_PARTS = ("cp311", "manylinux", "x86_64")


class BundleError(RuntimeError):
    """The environment cannot produce a Lambda bundle that would run."""


def source_files() -> Iterator[tuple[Path, Path]]:
    """(repository file, path inside the asset) for what the handlers need.

    Handlers go to the asset root (Lambda imports `create_record.handler`, and they import `observability`
    as a top-level module); the package keeps its layout, the schema inside it.
    """
    for pattern in SOURCE_GLOBS:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(REPO)
                yield path, relative.relative_to(HANDLERS_DIR) if relative.parts[0] == HANDLERS_DIR else relative


def distributions() -> list[metadata.Distribution]:
    """The installed distributions of jsonschema and everything it requires here, without extras."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(ROOT_DISTRIBUTIONS)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        dist = metadata.distribution(name)
        found[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def check_platform(dist: metadata.Distribution) -> None:
    """A compiled distribution must be the Lambda's build: CPython 3.11, manylinux, x86_64."""
    wheel = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" in wheel:
        return
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    if not any(all(part in tag for part in PLATFORM_TAG_PARTS) for tag in tags):
        name = dist.metadata["Name"]
        raise BundleError(
            f"synthesize on linux x86_64 with Python 3.11: {name} is compiled and its wheel here is "
            f"{', '.join(tags) or 'untagged'}, which the python3.11 x86_64 Lambda runtime cannot load"
        )


def distribution_files(dist: metadata.Distribution) -> Iterator[tuple[Path, Path]]:
    """(installed file, path inside the asset) for one distribution; no caches, no scripts outside site-packages."""
    for file in dist.files or []:
        relative = Path(str(file))
        if relative.parts[0] == ".." or "__pycache__" in relative.parts or relative.suffix == ".pyc":
            continue
        yield Path(str(dist.locate_file(file))), relative


def bundle(output_dir: Path) -> None:
    dists = distributions()
    for dist in dists:
        check_platform(dist)
    for source, relative in source_files():
        _copy(source, output_dir / relative)
    for dist in dists:
        for installed, relative in distribution_files(dist):
            _copy(installed, output_dir / relative)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


@jsii.implements(ILocalBundling)
class LocalBundling:
    """CDK's hook for bundling without Docker; returning True tells CDK not to try Docker."""

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        bundle(Path(output_dir))
        return True


def lambda_code() -> lambda_.Code:
    # The hash of the bundle itself, so that only a real change in the shipped files makes a new version.
    return lambda_.Code.from_asset(
        str(REPO),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(image=DockerImage.from_registry("unused-local-bundling-only"), local=LocalBundling()),
    )

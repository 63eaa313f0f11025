"""`codeclab codec check`: everything about a package that can be checked before it runs, said line by line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from codeclab.experiments.codec_package import is_archive_uri, read_manifest, resolve_package_params
from codeclab.experiments.schema import CodecParams
from codeclab.worker.packages.unpack import PackageDir, unpack
from codeclab.worker.packages.verify import sha256_file

# The 2-frame encode/decode through the sandbox belongs to the sandbox side of issue 17; until it lands,
# `codec check` says it did not run it rather than pretend.
SANDBOX_TRIAL_NOTE = "the 2-frame encode/decode through the sandbox (not built yet: issue 17's sandbox side)"


@dataclass(frozen=True)
class CheckedPackage:
    package: PackageDir
    defaults: CodecParams  # the params a spec gets when it gives none
    archive_sha256: str | None  # for a .tar.gz: what the cache and `codec pack` name it by
    trial_note: str = SANDBOX_TRIAL_NOTE

    def lines(self) -> list[str]:
        manifest = self.package.manifest
        lines = [
            f"package   {manifest.name} {manifest.version} (device {manifest.device}, entry {manifest.entry})",
            f"tree      sha256 {self.package.tree_sha256}",
        ]
        if self.archive_sha256:
            lines.append(f"archive   sha256 {self.archive_sha256}")
        lines += [f"weights   {name}: sha256 {digest} ok" for name, digest in sorted(manifest.weights.items())]
        lines.append(f"params    defaults {json.dumps(self.defaults, sort_keys=True)}")
        return lines


def check_package(uri: str, cache: Path) -> CheckedPackage:
    """Unpack and check the package at `uri` (a PackageError or SpecError names the fault)."""
    if is_archive_uri(uri):
        read_manifest(uri)  # the API reads only the first member: it must be codec.json
    package = unpack(uri, cache)
    defaults = resolve_package_params(package.manifest, {})
    archive = sha256_file(Path(uri)) if is_archive_uri(uri) and not uri.startswith("s3://") else None
    return CheckedPackage(package, defaults, archive)

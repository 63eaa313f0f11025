"""`codeclab codec check`: everything about a package that can be checked before it runs, said line by line;
then a short trial run for real: a few frames encoded and decoded through the sandbox, as the worker runs them."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codeclab.experiments import validate_spec
from codeclab.experiments.codec_package import is_archive_uri, read_manifest, resolve_package_params
from codeclab.experiments.result import Result
from codeclab.experiments.schema import CodecLimitsSpec, CodecParams, SpecDocument
from codeclab.worker.codecs import package_codec
from codeclab.worker.hashing import sha256_file
from codeclab.worker.packages.unpack import PackageDir, unpack
from codeclab.worker.progress import Progress
from codeclab.worker.run import RunOptions, run_experiment


@dataclass(frozen=True)
class CheckedPackage:
    package: PackageDir
    defaults: CodecParams  # the params a spec gets when it gives none
    archive_sha256: str | None  # for a .tar.gz: what the cache and `codec pack` name it by

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


@dataclass(frozen=True)
class Trial:
    """What the trial codes: the first `frames` of `clip`, with `params` as given (defaults filled from the
    package's schema), untrusted unless `trusted` (as the spec's `"trusted": true`), under `limits` (as the
    spec's `limits.codec`), importing `allow_imports` beyond the default allow-list (as the spec's)."""

    clip: str
    frames: int
    params: CodecParams
    trusted: bool
    limits: CodecLimitsSpec
    allow_imports: tuple[str, ...] = ()


def trial_spec(uri: str, trial: Trial) -> SpecDocument:
    """The one-point spec the trial runs, checked as any spec is: a SpecError names the field (the params are
    checked against the package's own schema)."""
    value = {
        "name": "codec-check",
        "source": {"clip": trial.clip, "frames": trial.frames},
        "codec": {
            "name": "package",
            "uri": uri,
            "params": trial.params,
            "trusted": trial.trusted,
            **({"allow_imports": list(trial.allow_imports)} if trial.allow_imports else {}),
        },
        "metrics": {"vmaf": False},
        "limits": {"codec": trial.limits},
    }
    return validate_spec(value, "codec check").document


def run_trial(checked: CheckedPackage, spec: SpecDocument, progress: Progress) -> Result:
    """Encode and decode `spec`'s clip with the package the check unpacked, through the worker's own codec, run
    and metrics: the RD point `codeclab run` would report. A failure is the WorkerError the worker would record."""
    codec = package_codec(checked.package, spec["codec"], spec["limits"].get("codec"))
    with tempfile.TemporaryDirectory(prefix="codeclab-check-") as staging:
        return run_experiment(spec, Path(staging), progress, RunOptions(vmaf=False, keep_reference=False), codec)

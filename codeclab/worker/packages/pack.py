"""`codeclab codec pack`: a package folder into a reproducible `<name>-<version>.tar.gz`.

The same folder gives the same bytes on any machine: codec.json first (the API reads only that member), then the
files in sorted order, each with mtime 0, uid and gid 0, no owner names and mode 0644, in a
gzip stream with no name and no time.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from codeclab.experiments.codec_package import MANIFEST_NAME
from codeclab.worker.hashing import sha256_file
from codeclab.worker.packages.manifest import PackageError, load_manifest
from codeclab.worker.packages.unpack import folder_files
from codeclab.worker.packages.verify import verify_weights


def pack(folder: Path, out_dir: Path) -> tuple[Path, str]:
    """Check the package folder (manifest, entry, weights) and write its archive; (path, sha256 of the archive)."""
    files = folder_files(folder)
    if MANIFEST_NAME not in files:
        raise PackageError(f"codec package {folder}: no {MANIFEST_NAME} at its top; see docs/custom-codecs.md")
    manifest = load_manifest((folder / MANIFEST_NAME).read_bytes(), f"codec package {folder}")
    if not any(f in files for f in manifest.entry_files):
        raise PackageError(f"codec package {folder}: codec.json $.entry: {manifest.entry} is not in the package")
    verify_weights(folder, manifest, files)
    target = out_dir / f"{manifest.name}-{manifest.version}.tar.gz"
    staging = out_dir / f".{target.name}.{os.getpid()}.partial"
    try:
        with staging.open("wb") as raw:
            _write(folder, [MANIFEST_NAME, *(f for f in files if f != MANIFEST_NAME)], raw)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    return target, sha256_file(target)


def _write(folder: Path, names: list[str], raw: io.BufferedWriter) -> None:
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in names:
            path = folder / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with path.open("rb") as data:
                tar.addfile(info, data)

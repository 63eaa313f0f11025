"""Materialise a codec package (a folder, or a .tar.gz at a path or s3:// URI) into a cache keyed by its content.

Nothing in a package is trusted: an archive's members are written by this module, never by tarfile's extract,
and only regular files and folders are accepted, at relative paths without `..`; no link, device or FIFO is
ever created. File count and total size are capped. A package is unpacked into a sibling staging folder, checked
(manifest, entry module, weights), then renamed into place, so two workers at once each see a whole package.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from codeclab.experiments.codec_package import MANIFEST_NAME, CodecManifest, is_archive_uri
from codeclab.experiments.result import PackageConditions
from codeclab.worker.hashing import sha256_file
from codeclab.worker.packages.fetch import copy_exactly, download
from codeclab.worker.packages.manifest import PackageError, load_manifest
from codeclab.worker.packages.verify import verify_weights

MAX_FILES = 10_000
MAX_TOTAL_BYTES = 2 * 1024**3  # a 500 MB checkpoint, several of them, and the code
# Left out of a folder's tree (and of `codec pack`): caches and editor litter, never part of a package.
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".DS_Store", ".ipynb_checkpoints"})
IGNORED_SUFFIXES = (".pyc", ".pyo")
CACHE_ENV = "CODECLAB_PACKAGE_CACHE"


@dataclass(frozen=True)
class PackageLimits:
    """How much a package may unpack to: counted from the archive's headers before a byte is written."""

    max_files: int = MAX_FILES
    max_bytes: int = MAX_TOTAL_BYTES


@dataclass(frozen=True)
class PackageDir:
    """An unpacked, checked package: read it at `root`; `tree_sha256` names its content (see tree_sha256)."""

    root: Path
    manifest: CodecManifest
    tree_sha256: str

    def conditions(self) -> PackageConditions:
        """What `conditions.codec.package` records: two versions or two checkpoints are never one curve."""
        recorded: PackageConditions = {
            "name": self.manifest.name,
            "version": self.manifest.version,
            "tree_sha256": self.tree_sha256,
            "weights": dict(sorted(self.manifest.weights.items())),
        }
        if self.manifest.rate_param:
            recorded["rate_param"] = self.manifest.rate_param
        return recorded


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "codeclab" / "packages")


def unpack(uri: str, cache: Path | None = None, s3: Any = None, limits: PackageLimits | None = None) -> PackageDir:
    """The package at `uri`, unpacked (or found) in `cache` and checked; a fault is a PackageError (exit 2)."""
    cache = cache or default_cache_dir()
    limits = limits or PackageLimits()
    cache.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        if not is_archive_uri(uri):
            raise PackageError(f"$.codec.uri: {uri}: an s3:// package must be a .tar.gz (codeclab codec pack)")
        archive = download(uri, cache / f".download-{secrets.token_hex(8)}.tar.gz", limits.max_bytes, "$.codec.uri", s3)
        return _from_archive(archive, cache, uri, limits, remove_after=True)
    path = Path(uri)
    if path.is_dir():
        return _from_folder(path, cache, uri, limits)
    if path.is_file() and is_archive_uri(uri):
        return _from_archive(path, cache, uri, limits, remove_after=False)
    raise PackageError(f"$.codec.uri: {uri}: no such folder or .tar.gz; give a package folder or its archive")


def folder_files(folder: Path, limits: PackageLimits | None = None) -> list[str]:
    """A package folder's files (relative POSIX paths, sorted), refusing links, devices, FIFOs and oversize trees."""
    files: list[str] = []
    total = 0
    for path in _walk(folder):
        info = path.lstat()
        relative = path.relative_to(folder).as_posix()
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            raise PackageError(
                f"codec package {folder}: {relative} is a {_kind(info.st_mode)}; a package holds only "
                "regular files and folders (copy the file in instead of linking it)"
            )
        if info.st_nlink > 1:
            raise PackageError(f"codec package {folder}: {relative} is a hard link; copy the file in instead")
        files.append(relative)
        total += info.st_size
        _check_caps(len(files), total, str(folder), limits or PackageLimits())
    return sorted(files)


def tree_sha256(root: Path, files: list[str]) -> str:
    """The package's content hash: the same for a folder and the archive `codec pack` makes of it."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{sha256_file(root / name)}\n".encode())
    return digest.hexdigest()


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            if name not in IGNORED_NAMES and not name.endswith(IGNORED_SUFFIXES):
                yield base / name


def _from_folder(folder: Path, cache: Path, uri: str, limits: PackageLimits) -> PackageDir:
    files = folder_files(folder, limits)
    key = "tree-" + tree_sha256(folder, files)

    def fill(staging: Path) -> None:
        for name in files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, target, follow_symlinks=False)

    return _materialise(cache, key, uri, fill)


def _from_archive(archive: Path, cache: Path, uri: str, limits: PackageLimits, remove_after: bool) -> PackageDir:
    try:
        key = "archive-" + sha256_file(archive)

        def fill(staging: Path) -> None:
            try:
                with tarfile.open(archive, mode="r:gz") as tar:
                    _extract(tar, staging, uri, limits)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise PackageError(
                    f"codec package {uri}: not a readable .tar.gz ({exc}); make it with codeclab codec pack"
                ) from None

        return _materialise(cache, key, uri, fill)
    finally:
        if remove_after:
            archive.unlink(missing_ok=True)


def _extract(tar: tarfile.TarFile, staging: Path, uri: str, limits: PackageLimits) -> None:
    seen: set[str] = set()
    total = 0
    for member in tar:
        name = _member_name(member.name, uri)
        if member.isdir():
            continue
        if not member.isfile():
            raise PackageError(
                f"codec package {uri}: {member.name} is a {_member_kind(member)}; a package holds "
                "only regular files and folders, so nothing was unpacked"
            )
        if name in seen:
            raise PackageError(f"codec package {uri}: {name} appears twice in the archive")
        seen.add(name)
        total += member.size
        _check_caps(len(seen), total, uri, limits)
        source = tar.extractfile(member)
        if source is None:
            raise PackageError(f"codec package {uri}: {name} cannot be read from the archive")
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, target.open("xb") as out:
            copy_exactly(source, out, member.size)


def _member_name(raw: str, uri: str) -> str:
    path = PurePosixPath(raw)
    parts = [p for p in path.parts if p != "."]
    if raw.startswith("/") or path.is_absolute() or ".." in parts or "\\" in raw or not parts:
        raise PackageError(
            f"codec package {uri}: the archive names {raw!r}; members must be relative paths inside "
            "the package, without '..', so nothing was unpacked"
        )
    return "/".join(parts)


def _check_caps(count: int, total: int, where: str, limits: PackageLimits) -> None:
    if count > limits.max_files:
        raise PackageError(f"codec package {where}: more than {limits.max_files} files; a package may have no more")
    if total > limits.max_bytes:
        raise PackageError(
            f"codec package {where}: over {limits.max_bytes} bytes unpacked; a package may hold at "
            "most that (weights included)"
        )


def _materialise(cache: Path, key: str, uri: str, fill: Any) -> PackageDir:
    """The package at cache/key: made in a staging sibling, checked, renamed; a finished one is checked again."""
    final = cache / key
    if not final.is_dir():
        staging = cache / f".staging-{key}-{secrets.token_hex(8)}"
        staging.mkdir()
        try:
            fill(staging)
            _checked(staging, uri)
            try:
                staging.rename(final)
            except OSError:  # another worker renamed the same content first; theirs is as good as ours
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _checked(final, uri)


def _checked(root: Path, uri: str) -> PackageDir:
    """The manifest, the entry module and every weights hash of an unpacked package."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PackageError(f"codec package {uri}: no {MANIFEST_NAME} at its top; see docs/custom-codecs.md")
    manifest = load_manifest(manifest_path.read_bytes(), f"codec package {uri}")
    files = folder_files(root)
    if not any(f in files for f in manifest.entry_files):
        raise PackageError(
            f"codec package {uri}: codec.json $.entry: {manifest.entry} is not in the package "
            f"(expected {' or '.join(manifest.entry_files)})"
        )
    verify_weights(root, manifest, files)
    return PackageDir(root=root, manifest=manifest, tree_sha256=tree_sha256(root, files))


def _kind(mode: int) -> str:
    kinds = {stat.S_ISLNK: "symbolic link", stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket"}
    return next((name for test, name in kinds.items() if test(mode)), "device")


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device"
    return "FIFO" if member.isfifo() else "special entry"

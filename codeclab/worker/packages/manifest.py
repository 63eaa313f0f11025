"""The worker's view of codec.json: the manifest is parsed by codeclab.experiments.codec_package (the API checks a
package's params with it, so it must be Lambda-safe); here its faults become the worker's PackageError (exit 2)."""

from __future__ import annotations

from codeclab.experiments.codec_package import MANIFEST_NAME, CodecManifest, parse_manifest, resolve_package_params
from codeclab.experiments.schema import CodecParams, SpecError
from codeclab.worker.errors import InvalidSpec


class PackageError(InvalidSpec):
    """A codec package that cannot be used: its manifest, its files or its weights (exit 2, INVALID_SPEC)."""


def load_manifest(data: bytes, origin: str) -> CodecManifest:
    """A checked manifest; any fault a PackageError naming the field."""
    try:
        return parse_manifest(data, origin)
    except SpecError as exc:
        raise PackageError(str(exc)) from None


def resolve_params(manifest: CodecManifest, params: CodecParams) -> CodecParams:
    """The params checked again on the worker, against the manifest it unpacked and verified (the archive at a
    URI may have changed since the spec was checked), defaults filled; a fault is a PackageError (exit 2)."""
    try:
        return resolve_package_params(manifest, params)
    except SpecError as exc:
        raise PackageError(str(exc)) from None


__all__ = ["MANIFEST_NAME", "CodecManifest", "PackageError", "load_manifest", "resolve_params"]

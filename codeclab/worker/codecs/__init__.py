"""The codec registry: every codec behind one interface, built from validated params."""

from __future__ import annotations

from codeclab.experiments.schema import (
    CodecLimitsSpec,
    CodecParams,
    CodecSpec,
    SpecError,
    codec_names,
    resolve_codec_params,
)
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.codecs.custom import CustomCodec, has_cuda
from codeclab.worker.codecs.ffmpeg_video import X264, X265, SvtAv1, Vp9
from codeclab.worker.codecs.image import Avif, Jpeg, WebP
from codeclab.worker.codecs.learned import LearnedCodec
from codeclab.worker.codecs.package import PackageCodec
from codeclab.worker.errors import InvalidSpec
from codeclab.worker.packages.manifest import resolve_params
from codeclab.worker.packages.unpack import PackageDir, unpack
from codeclab.worker.sandbox.layers import codec_limits

_CODECS: tuple[type[Codec], ...] = (X264, X265, SvtAv1, Vp9, Jpeg, WebP, Avif, LearnedCodec, CustomCodec, PackageCodec)
REGISTRY: dict[str, type[Codec]] = {c.name: c for c in _CODECS}

__all__ = ["REGISTRY", "Codec", "StreamHeader", "build_codec", "codecs_taking", "make_codec", "package_codec"]


def codecs_taking(pix_fmt: str) -> list[str]:
    """The codecs that code a reference of `pix_fmt` as it is."""
    return [name for name, codec in REGISTRY.items() if pix_fmt in codec.pix_fmts]


def accept_reference(codec: Codec, pix_fmt: str) -> None:
    """Give `codec` a reference of `pix_fmt`, or refuse it before anything is encoded, saying what to do instead."""
    if pix_fmt not in codec.pix_fmts:
        takers = ", ".join(codecs_taking(pix_fmt))
        raise InvalidSpec(
            f"$.codec.name: {codec.name} takes {' or '.join(codec.pix_fmts)} only, and this source is {pix_fmt}; "
            f"it is never converted silently. Use a codec that takes {pix_fmt} here ({takers}), or add "
            '"convert_to": "yuv420p" to source to measure every codec at 8 bits (recorded in the conditions)'
        )
    codec.pix_fmt = pix_fmt


def build_codec(entry: CodecSpec, limits: CodecLimitsSpec | None = None) -> Codec:
    """The codec of a checked spec's codec entry (its params already resolved when the spec was checked);
    `limits` is the spec's limits.codec, for codecs that run in the sandbox."""
    if entry["name"] == CustomCodec.name:
        return CustomCodec(entry["params"], entry, codec_limits(limits or {}, has_cuda()))
    if entry["name"] == PackageCodec.name:
        return _package_codec(entry, limits)
    return REGISTRY[entry["name"]](entry["params"])


def _package_codec(entry: CodecSpec, limits: CodecLimitsSpec | None) -> Codec:
    """Unpack and verify the package (exit 2 if it is not valid), then run it in the sandbox."""
    return package_codec(unpack(entry["uri"]), entry, limits)


def package_codec(package: PackageDir, entry: CodecSpec, limits: CodecLimitsSpec | None) -> PackageCodec:
    """The codec of an unpacked, verified package, run in the sandbox: the worker's, and `codeclab codec check`'s."""
    manifest = package.manifest
    return PackageCodec(
        resolve_params(manifest, entry["params"]), package.root, manifest.entry, manifest.weights,
        manifest.device, f"{manifest.name} {manifest.version}", entry.get("allow_imports", []), entry["trusted"],
        limits=codec_limits(limits or {}, has_cuda()), recorded=package.conditions(),
    )  # fmt: skip


def make_codec(name: str, params: CodecParams, code: str | None = None) -> Codec:
    """A codec from params that no spec check has seen yet (tests, benchmarks): checked here; errors list choices."""
    if name not in REGISTRY:
        valid = ", ".join(codec_names())
        raise InvalidSpec(f"$.codec.name: unknown codec {name!r}; valid: {valid}")
    try:
        resolved = resolve_codec_params(name, params)
    except SpecError as exc:
        raise InvalidSpec(str(exc)) from None
    entry: CodecSpec = {"name": name, "params": resolved, "trusted": False}
    if code is not None:
        entry["code"] = code
    return build_codec(entry)

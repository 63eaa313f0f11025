"""The codec registry: every codec behind one interface, built from validated params."""

from __future__ import annotations

from typing import Any

from codeclab.experiments import SpecError, codec_names, resolve_codec_params
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.codecs.custom import CustomCodec
from codeclab.worker.codecs.ffmpeg_video import X264, X265, SvtAv1, Vp9
from codeclab.worker.codecs.image import Avif, Jpeg, WebP
from codeclab.worker.codecs.learned import LearnedCodec
from codeclab.worker.errors import InvalidInput

_CODECS: tuple[type[Codec], ...] = (X264, X265, SvtAv1, Vp9, Jpeg, WebP, Avif, LearnedCodec, CustomCodec)
REGISTRY: dict[str, type[Codec]] = {c.name: c for c in _CODECS}

__all__ = ["REGISTRY", "Codec", "StreamHeader", "make_codec"]


def make_codec(name: str, params: dict[str, Any], entry: dict[str, Any] | None = None) -> Codec:
    """A codec with params checked against the schema; errors list the valid choices.

    `entry` is the spec's whole codec entry, which a custom codec needs for its code.
    """
    if name not in REGISTRY:
        valid = ", ".join(codec_names())
        raise InvalidInput(f"$.codec.name: unknown codec {name!r}; valid: {valid}", "INVALID_SPEC")
    try:
        resolved = resolve_codec_params(name, params)
    except SpecError as exc:
        raise InvalidInput(str(exc), "INVALID_SPEC") from None
    if name == CustomCodec.name:
        return CustomCodec(resolved, entry or {})
    return REGISTRY[name](resolved)

"""Expanding a sweep into its points: one checked single-experiment document per point.

A sweep holds a parameter grid ({"crf": [23, 28]}), a list of codec entries under `codecs`,
or both; with both, every codec entry is crossed with the grid. Without `codecs`, the
spec's own codec is swept. A grid key may name the codec it sweeps ({"x265.crf": [23, 28]}):
it then applies only to the entries of that codec, so one sweep can move x265's crf and a
package's quality. A test set crosses its clips with all of that (clips x codecs x grid).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from codeclab.experiments.ids import experiment_id_for
from codeclab.experiments.schema import (
    CodecParams,
    CodecSpec,
    SourceSpec,
    SpecDocument,
    SpecError,
    SpecProblem,
    check_codec,
    check_source,
)

Part = TypeVar("Part", SourceSpec, CodecSpec)
MAX_POINTS = 10_000
NAME_LIMIT = 128  # the schema's limit on $.name
# Locally the points share one machine; on AWS, Batch spreads them over the compute environment.
DEFAULT_MAX_CONCURRENCY = 4
_CONTROL_KEYS = frozenset({"codecs", "max_concurrency"})


@dataclass(frozen=True)
class SweepPoint:
    index: int
    label: str  # e.g. "x264 crf=23"
    spec: SpecDocument  # a checked single-point document, defaults filled in


def point_id(parent_id: str, index: int) -> str:
    """A point's experiment id, derived from its parent's, so a retried CreateRecord makes no duplicates."""
    return experiment_id_for(f"{parent_id}#point{index}")


def max_concurrency(document: SpecDocument) -> int:
    return int(document.get("sweep", {}).get("max_concurrency", DEFAULT_MAX_CONCURRENCY))


def is_sweep(document: SpecDocument) -> bool:
    """A spec of many points: a sweep, a test set, or both."""
    return "sweep" in document or "test_set" in document["source"]


@dataclass(frozen=True)
class _Setting:
    """One codec entry with one combination of the grid: what a point codes its clip with."""

    where: str  # the sweep field that made it, for problems
    entry: CodecSpec
    label: str  # the codec and the settings that tell it apart, e.g. "x264 crf=23"


def expand_sweep(document: SpecDocument, clips: tuple[SourceSpec, ...], origin: str = "spec") -> tuple[SweepPoint, ...]:
    """Every point of a checked sweep document over its resolved clips, in order: clip, codec entry, grid.

    A point is the document with one clip and one setting. Each clip and each setting is checked once,
    so 10,000 points cost as many checks as clips plus settings, not one whole-document check each.
    """
    settings = _settings(document, origin)
    count = len(clips) * len(settings)
    if count > MAX_POINTS:
        problem = SpecProblem("$.sweep", f"{count} points; a sweep may have at most {MAX_POINTS}, split it up")
        raise SpecError([problem], origin)
    named = "test_set" in document["source"]
    labels = [f"{c['sequence']} {s.label}" if named else s.label for c in clips for s in settings]
    problems: dict[tuple[str, str], list[str]] = {}  # one line per distinct problem, however many points share it

    def checked(check: Callable[[object, str], Part], part: object, where: str, indices: range) -> Part | None:
        try:
            return check(part, origin)
        except SpecError as exc:
            for problem in exc.problems:
                problems.setdefault((where, str(problem)), []).extend(f"point {i} ({labels[i]})" for i in indices)
            return None

    width = len(settings)
    sources = [checked(check_source, c, "$.source.test_set", range(i * width, (i + 1) * width))
               for i, c in enumerate(clips)]  # fmt: skip
    entries = [checked(check_codec, s.entry, s.where, range(j, count, width)) for j, s in enumerate(settings)]
    if problems:
        ordered = sorted(problems.items(), key=lambda item: int(item[1][0].split()[1]))
        raise SpecError([_shared_problem(where, text, at) for (where, text), at in ordered], origin)
    # What every point shares; not the set's own source, which a 10,000-clip set would copy into every point.
    single = cast(SpecDocument, {k: v for k, v in document.items() if k not in {"sweep", "source", "codec"}})
    return tuple(
        _point(single, cast(SourceSpec, sources[i // width]), cast(CodecSpec, entries[i % width]), i, labels[i])
        for i in range(count)
    )


def _settings(document: SpecDocument, origin: str) -> list[_Setting]:
    """Every codec entry crossed with the grid's combinations, in order, with the label that tells each apart."""
    sweep = document.get("sweep", {})
    grid = {key: values for key, values in sweep.items() if key not in _CONTROL_KEYS}
    codecs: list[CodecSpec] = sweep.get("codecs") or [document["codec"]]
    _refuse_misplaced_grid_keys(grid, {codec["name"] for codec in codecs}, origin)
    settings = []
    for codec_index, codec in enumerate(codecs):
        distinct = _distinguishing_params(codec, codecs)
        own = _grid_of(codec, grid)
        for values in itertools.product(*own.values()):
            overrides = dict(zip(own, values, strict=True))
            label = " ".join([codec["name"], *(f"{k}={v}" for k, v in {**distinct, **overrides}.items())])
            where = f"$.sweep.codecs[{codec_index}]" if "codecs" in sweep else "$.sweep"
            settings.append(_Setting(where, _with_overrides(codec, overrides), label))
    return settings


def _with_overrides(codec: CodecSpec, overrides: CodecParams) -> CodecSpec:
    entry = copy.deepcopy(codec)
    params = {**entry.get("params", {}), **overrides}
    # A swept rate knob replaces the other one: crf in the grid must not clash with a default qp.
    for knob in ("crf", "qp"):
        if knob in overrides:
            params.pop("qp" if knob == "crf" else "crf", None)
    entry["params"] = params
    return entry


def _point(single: SpecDocument, source: SourceSpec, codec: CodecSpec, index: int, label: str) -> SweepPoint:
    """One point, assembled from checked parts: its name is ours and always matches the schema's pattern."""
    document = copy.deepcopy(single)
    document["source"], document["codec"] = copy.deepcopy(source), copy.deepcopy(codec)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label)
    document["name"] = f"{single['name']}.p{index}-{slug}"[:NAME_LIMIT]
    return SweepPoint(index, label, document)


def _grid_of(codec: CodecSpec, grid: dict[str, list[object]]) -> dict[str, list[object]]:
    """The grid one codec entry is crossed with: every unscoped key, and the keys scoped to its codec ("x265.crf")."""
    own = {}
    for key, values in grid.items():
        scope, param = _scoped(key)
        if scope in (None, codec["name"]):
            own[param] = values
    return own


def _refuse_misplaced_grid_keys(grid: dict[str, list[object]], codec_names: set[str], origin: str) -> None:
    """A grid sweeps codec parameters of codecs the sweep has, each once; clips come from a test set.

    Said once per key, instead of failing every point.
    """
    problems = []
    accepted: list[str] = []
    for key in grid:
        scope, param = _scoped(key)
        clash = next((other for other in accepted if _same_param_of_one_codec(key, other)), None)
        if param in SourceSpec.__annotations__:
            hint = "name the clips in `source.test_set`; set start, frames, crop and size per clip there"
            problems.append(SpecProblem(f"$.sweep.{key}", f"{param} is a source field, not a codec parameter: {hint}"))
        elif scope is not None and scope not in codec_names:
            its = ", ".join(sorted(codec_names))
            problems.append(
                SpecProblem(f"$.sweep.{key}", f"no codec entry of the sweep is {scope!r}; its codecs: {its}")
            )
        elif clash:
            problems.append(
                SpecProblem(f"$.sweep.{key}", f"{param} is swept twice for one codec, also by $.sweep.{clash}")
            )
        else:
            accepted.append(key)
    if problems:
        raise SpecError(problems, origin)


def _same_param_of_one_codec(key: str, other: str) -> bool:
    """Whether two grid keys sweep one param of a codec: "crf" and "x265.crf" do, "x264.crf" and "x265.crf" not."""
    (scope, param), (other_scope, other_param) = _scoped(key), _scoped(other)
    return param == other_param and (scope is None or other_scope is None or scope == other_scope)


def _scoped(key: str) -> tuple[str | None, str]:
    """A grid key's codec (None for every codec) and param: "x265.crf" is ("x265", "crf"), "crf" is (None, "crf")."""
    scope, dot, param = key.rpartition(".")
    return (scope if dot else None), param


def _shared_problem(where: str, text: str, points: list[str]) -> SpecProblem:
    if len(points) == 1:
        return SpecProblem(where, f"{points[0]}: {text}")
    return SpecProblem(where, f"{len(points)} points ({points[0]}, ...): {text}")


def _distinguishing_params(codec: CodecSpec, codecs: list[CodecSpec]) -> CodecParams:
    """The params in which this entry differs from another entry of the same codec: what its label needs."""
    params = codec.get("params", {})
    others = [c.get("params", {}) for c in codecs if c["name"] == codec["name"] and c is not codec]
    return {k: v for k, v in params.items() if any(o.get(k) != v for o in others)}

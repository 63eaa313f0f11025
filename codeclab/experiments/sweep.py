"""Expanding a sweep into its points: one checked single-experiment document per point.

A sweep holds a parameter grid ({"crf": [23, 28]}), a list of codec entries under `codecs`,
or both; with both, every codec entry is crossed with the grid. Without `codecs`, the
spec's own codec is swept. A test set crosses its clips with all of that (clips x codecs x grid).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass

from codeclab.experiments.ids import experiment_id_for
from codeclab.experiments.schema import (
    CodecParams,
    CodecSpec,
    SourceSpec,
    SpecDocument,
    SpecError,
    SpecProblem,
    check_document,
)

MAX_POINTS = 256
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


def expand_sweep(document: SpecDocument, clips: tuple[SourceSpec, ...], origin: str = "spec") -> tuple[SweepPoint, ...]:
    """Every point of a checked sweep document over its resolved clips, in order: clip, codec entry, grid."""
    sweep = document.get("sweep", {})
    grid = {key: values for key, values in sweep.items() if key not in _CONTROL_KEYS}
    codecs: list[CodecSpec] = sweep.get("codecs") or [document["codec"]]
    combinations = list(itertools.product(*grid.values())) or [()]
    count = len(clips) * len(codecs) * len(combinations)
    if count > MAX_POINTS:
        problem = SpecProblem("$.sweep", f"{count} points; a sweep may have at most {MAX_POINTS}, split it up")
        raise SpecError([problem], origin)
    _refuse_source_fields_in_grid(grid, origin)
    points: list[SweepPoint] = []
    problems: dict[tuple[str, str], list[str]] = {}  # one line per distinct problem, however many points share it
    for source in clips:
        prefix = [source["sequence"]] if "test_set" in document["source"] else []
        for codec_index, codec in enumerate(codecs):
            distinct = _distinguishing_params(codec, codecs)
            for values in combinations:
                overrides = dict(zip(grid, values, strict=True))
                settings = (f"{k}={v}" for k, v in {**distinct, **overrides}.items())
                label = " ".join([*prefix, codec["name"], *settings])
                index = len(points) + sum(map(len, problems.values()))
                try:
                    points.append(_point(document, source, codec, overrides, index, label, origin))
                except SpecError as exc:
                    where = f"$.sweep.codecs[{codec_index}]" if "codecs" in sweep else "$.sweep"
                    for problem in exc.problems:
                        problems.setdefault((where, str(problem)), []).append(f"point {index} ({label})")
    if problems:
        raise SpecError([_shared_problem(where, text, at) for (where, text), at in problems.items()], origin)
    return tuple(points)


def _refuse_source_fields_in_grid(grid: dict[str, list[object]], origin: str) -> None:
    """A grid sweeps codec parameters; clips come from a test set, which says so instead of failing every point."""
    misplaced = [key for key in grid if key in SourceSpec.__annotations__]
    if misplaced:
        hint = "name the clips in `source.test_set`; set start, frames, crop and size per clip there"
        problems = [SpecProblem(f"$.sweep.{key}", f"{key} is a source field, not a codec parameter: {hint}")
                    for key in misplaced]  # fmt: skip
        raise SpecError(problems, origin)


def _shared_problem(where: str, text: str, points: list[str]) -> SpecProblem:
    if len(points) == 1:
        return SpecProblem(where, f"{points[0]}: {text}")
    return SpecProblem(where, f"{len(points)} points ({points[0]}, ...): {text}")


def _point(
    document: SpecDocument,
    source: SourceSpec,
    codec: CodecSpec,
    overrides: CodecParams,
    index: int,
    label: str,
    origin: str,
) -> SweepPoint:
    entry = copy.deepcopy(codec)
    params = {**entry.get("params", {}), **overrides}
    if overrides:
        # A swept rate knob replaces the other one: crf in the grid must not clash with a default qp.
        for knob in ("crf", "qp"):
            if knob in overrides:
                params.pop("qp" if knob == "crf" else "crf", None)
    entry["params"] = params
    single = {k: copy.deepcopy(v) for k, v in document.items() if k != "sweep"}
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label)
    single.update(source=copy.deepcopy(source), codec=entry, name=f"{document['name']}.p{index}-{slug}"[:NAME_LIMIT])
    return SweepPoint(index, label, check_document(single, origin=f"{origin} point {index}"))


def _distinguishing_params(codec: CodecSpec, codecs: list[CodecSpec]) -> CodecParams:
    """The params in which this entry differs from another entry of the same codec: what its label needs."""
    params = codec.get("params", {})
    others = [c.get("params", {}) for c in codecs if c["name"] == codec["name"] and c is not codec]
    return {k: v for k, v in params.items() if any(o.get(k) != v for o in others)}

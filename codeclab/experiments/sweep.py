"""Expanding a sweep into its points: one checked single-experiment document per point.

A sweep holds a parameter grid ({"crf": [23, 28]}), a list of codec entries under `codecs`,
or both; with both, every codec entry is crossed with the grid. Without `codecs`, the
spec's own codec is swept.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass

from codeclab.experiments.ids import experiment_id_for
from codeclab.experiments.schema import CodecParams, CodecSpec, SpecDocument, SpecError, SpecProblem, check_document

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


def expand_sweep(document: SpecDocument, origin: str = "spec") -> tuple[SweepPoint, ...]:
    """Every point of a checked sweep document, in order: codec entries, then the grid's combinations."""
    sweep = document["sweep"]
    grid = {key: values for key, values in sweep.items() if key not in _CONTROL_KEYS}
    codecs: list[CodecSpec] = sweep.get("codecs") or [document["codec"]]
    combinations = list(itertools.product(*grid.values())) or [()]
    count = len(codecs) * len(combinations)
    if count > MAX_POINTS:
        problem = SpecProblem("$.sweep", f"{count} points; a sweep may have at most {MAX_POINTS}, split it up")
        raise SpecError([problem], origin)
    points: list[SweepPoint] = []
    problems: list[SpecProblem] = []
    for codec_index, codec in enumerate(codecs):
        distinct = _distinguishing_params(codec, codecs)
        for values in combinations:
            overrides = dict(zip(grid, values, strict=True))
            label = " ".join([codec["name"], *(f"{k}={v}" for k, v in {**distinct, **overrides}.items())])
            index = len(points) + len(problems)
            try:
                points.append(_point(document, codec, overrides, index, label, origin))
            except SpecError as exc:
                where = f"$.sweep.codecs[{codec_index}]" if "codecs" in sweep else "$.sweep"
                problems += [SpecProblem(where, f"point {index} ({label}): {p}") for p in exc.problems]
    if problems:
        raise SpecError(problems, origin)
    return tuple(points)


def _point(
    document: SpecDocument, codec: CodecSpec, overrides: CodecParams, index: int, label: str, origin: str
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
    single.update(codec=entry, name=f"{document['name']}.p{index}-{slug}"[:NAME_LIMIT])
    return SweepPoint(index, label, check_document(single, origin=f"{origin} point {index}"))


def _distinguishing_params(codec: CodecSpec, codecs: list[CodecSpec]) -> CodecParams:
    """The params in which this entry differs from another entry of the same codec: what its label needs."""
    params = codec.get("params", {})
    others = [c.get("params", {}) for c in codecs if c["name"] == codec["name"] and c is not codec]
    return {k: v for k, v in params.items() if any(o.get(k) != v for o in others)}

"""Two versions of a codec package are two curves, never one.

A package's curve is labelled by its name and version (`blockdct 0.1 step=12`). When one
label would hold two packages, the same name and version with a different tree (another
checkpoint, another module), each gets as much of its tree hash as tells them apart
(`blockdct 0.1@3f2a9c1e`). A label that still holds two different packages (records that
agree on the tree but not on the weights) is refused, naming both: nothing downstream (the
duplicates, the anchor, the averages over sequences) ever sees two versions under one label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace

from codeclab.experiments.result import PackageConditions
from codeclab.report.curves import Point, codec_of, curve_label
from codeclab.report.runs import ReportError

SHORT_TREE = 8  # hex digits of the tree hash a label shows, more only where 8 do not tell two trees apart
SHOWN_DIGITS = 12  # of each hash in an error message


class VersionsMerged(ReportError):
    """One curve label would hold points of two different codec packages (or a package and another codec)."""

    def __init__(self, label: str, holders: Mapping[str, Sequence[Point]]) -> None:
        found = " vs ".join(
            f"{describe(points[0].package)} ({', '.join(p.experiment_id for p in points)})"
            for points in holders.values()
        )
        super().__init__(
            f"curve '{label}' would merge two different codecs: {found}; a curve holds one version of a package. "
            "Leave one of them (or its sweep) out of the ids, or give the packages different versions in codec.json "
            "and rerun"
        )


def separate_versions(points: Sequence[Point]) -> list[Point]:
    """The points, relabelled so that each curve label holds one codec package (or none); raises VersionsMerged."""
    by_label = _holders(points)
    digits = {label: _tree_digits(holders) for label, holders in by_label.items() if len(holders) > 1}
    relabelled = [
        replace(p, curve=curve_label(codec_of(p.experiment), p.package, digits[p.curve])) if p.curve in digits else p
        for p in points
    ]
    for label, holders in _holders(relabelled).items():
        if len(holders) > 1:
            raise VersionsMerged(label, holders)
    return relabelled


def describe(package: PackageConditions | None) -> str:
    """A package as a person tells it from another: name, version, tree and weights hashes."""
    if package is None:
        return "a codec that is not a package"
    weights = ", ".join(f"{name} {digest[:SHOWN_DIGITS]}" for name, digest in sorted(package["weights"].items()))
    tree = package["tree_sha256"][:SHOWN_DIGITS]
    return f"{package['name']} {package['version']} (tree {tree}, weights {weights or 'none'})"


def _holders(points: Sequence[Point]) -> dict[str, dict[str, list[Point]]]:
    """label -> each distinct package on it (by its canonical JSON; "null" for no package) -> its points."""
    by_label: dict[str, dict[str, list[Point]]] = {}
    for point in points:
        key = json.dumps(point.package, sort_keys=True)
        by_label.setdefault(point.curve, {}).setdefault(key, []).append(point)
    return by_label


def _tree_digits(holders: Mapping[str, Sequence[Point]]) -> int:
    """The fewest digits, at least SHORT_TREE, that tell the label's trees apart (two packages on one tree stay on
    one label, which separate_versions then refuses)."""
    trees = {points[0].package["tree_sha256"] if points[0].package else "" for points in holders.values()}
    return next((n for n in range(SHORT_TREE, 64) if len({t[:n] for t in trees}) == len(trees)), 64)

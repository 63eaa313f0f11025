"""The experiment spec: read, checked and (for a sweep) expanded once at each process boundary.

A `Spec` is what a boundary (the CLI, the API, CreateRecord, the worker) hands on: the checked document
with its defaults, and a sweep's points, each itself a checked single-experiment document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from codeclab.experiments.schema import SpecDocument, SpecError, SpecProblem, check_document, parse_spec_json
from codeclab.experiments.sweep import SweepPoint, expand_sweep, is_sweep, max_concurrency
from codeclab.experiments.test_sets import ClipCatalog, FileCatalog, resolve_clips


@dataclass(frozen=True)
class Spec:
    document: SpecDocument  # checked, every default filled in
    points: tuple[SweepPoint, ...] = ()  # a sweep's points, expanded once; empty for a single experiment

    @property
    def is_sweep(self) -> bool:
        return is_sweep(self.document)

    @property
    def name(self) -> str:
        return self.document["name"]

    @property
    def max_concurrency(self) -> int:
        return max_concurrency(self.document)

    def to_json(self) -> str:
        return json.dumps(self.document)


def validate_spec(value: object, origin: str = "spec", catalog: ClipCatalog | None = None) -> Spec:
    """Check a parsed spec, fill in its defaults and expand a sweep or test set: every point must be valid too.

    `catalog` reads a test set's folder or manifest (default: the filesystem, and S3 through boto3).
    """
    document = check_document(value, origin)
    if not is_sweep(document):
        return Spec(document)
    clips = resolve_clips(document["source"], origin, catalog or FileCatalog())
    return Spec(document, expand_sweep(document, clips, origin))


def read_spec(data: str | bytes, origin: str = "spec", catalog: ClipCatalog | None = None) -> Spec:
    """A spec from its JSON text: not UTF-8, not JSON, nested absurdly deep or invalid is a SpecError."""
    return validate_spec(parse_spec_json(data, origin), origin, catalog)


def load_spec_file(path: str | Path) -> Spec:
    """Read and check a spec file; JSON syntax errors name the line and column."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([SpecProblem("$", f"cannot read {path}: {exc.strerror}")], str(path)) from None
    return read_spec(data, str(path))

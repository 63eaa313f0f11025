"""The experiment spec: read, checked and (for a sweep) expanded once at each process boundary.

A `Spec` is what a boundary (the CLI, the API, CreateRecord, the worker) hands on: the checked document
with its defaults, and a sweep's points, each itself a checked single-experiment document.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path

from codeclab.experiments.codec_package import (
    PACKAGE_CODEC,
    CodecManifest,
    ManifestSource,
    codecs_prefix_problem,
    read_manifest,
    resolve_package_params,
)
from codeclab.experiments.limits import CodecCaps, over_codec_caps
from codeclab.experiments.schema import (
    CodecParams,
    CodecSpec,
    SpecDocument,
    SpecError,
    SpecProblem,
    check_document,
    parse_spec_json,
)
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


def validate_spec(
    value: object,
    origin: str = "spec",
    catalog: ClipCatalog | None = None,
    packages: ManifestSource | None = None,
    package_bucket: str | None = None,
    local_packages: bool = False,
    codec_caps: CodecCaps | None = None,
) -> Spec:
    """Check a parsed spec, fill in its defaults and expand a sweep or test set: every point must be valid too.

    `catalog` reads a test set's folder or manifest and `packages` a codec package's codec.json (default: the
    filesystem, and S3 through boto3). With `package_bucket` (the API), a package must be an s3:// archive under
    that bucket's codecs/ prefix, or with `local_packages` (local mode) a local path. With `codec_caps` (the API
    and CreateRecord: the deployment's), limits.codec must be under them.
    """
    document = check_document(value, origin)
    if codec_caps is not None:
        _check_codec_caps(document, codec_caps, origin)
    resolve = _PackageParams(packages, package_bucket, local_packages, origin)
    if not is_sweep(document):
        resolve(document["codec"])
        return Spec(document)
    resolve(document["codec"])
    for index, codec in enumerate(document.get("sweep", {}).get("codecs", [])):
        resolve(codec, f"$.sweep.codecs[{index}]")
    clips = resolve_clips(document["source"], origin, catalog or FileCatalog())
    points = expand_sweep(document, clips, origin)
    for point in points:
        try:
            resolve(point.spec["codec"])
        except SpecError as exc:  # a package's params swept by the grid: say which point
            problems = [SpecProblem("$.sweep", f"point {point.index} ({point.label}): {p}") for p in exc.problems]
            raise SpecError(problems, exc.origin) from None
    return Spec(document, points)


def _check_codec_caps(document: SpecDocument, caps: CodecCaps, origin: str) -> None:
    """limits.codec under the operator's caps, whatever the codec: a sweep's points share the document's limits."""
    over = over_codec_caps(document["limits"].get("codec") or {}, caps)
    if over:
        raise SpecError([SpecProblem(path, message) for path, message in over], origin)


class _PackageParams:
    """Checks a package codec's params against its own schema and fills its defaults; each manifest read once."""

    def __init__(self, source: ManifestSource | None, bucket: str | None, local: bool, origin: str) -> None:
        self._source, self._bucket, self._local, self._origin = source, bucket, local, origin
        self._manifests: dict[str, CodecManifest] = {}
        # (uri, params as given) -> params checked and filled: a sweep's points repeat a few settings many times
        self._resolved: dict[tuple[str, str], CodecParams] = {}

    def __call__(self, codec: CodecSpec, where: str = "$.codec") -> None:
        """`where`: the codec entry's own path, which the problems name (a sweep's entries are not $.codec)."""
        if codec["name"] == "learned" and "weights" in codec["params"]:
            self._check_prefix(codec["params"]["weights"]["uri"], where + ".params.weights.uri", "weights files")
        if codec["name"] != PACKAGE_CODEC:
            return
        uri = codec["uri"]
        try:
            if uri not in self._manifests:
                self._check_prefix(uri, "$.codec.uri", "packages")
                self._manifests[uri] = read_manifest(uri, self._source)
            given = (uri, json.dumps(codec["params"], sort_keys=True))
            if given not in self._resolved:
                self._resolved[given] = resolve_package_params(self._manifests[uri], codec["params"])
            codec["params"] = copy.deepcopy(self._resolved[given])
        except SpecError as exc:
            problems = [replace(p, path=where + p.path.removeprefix("$.codec")) if p.path.startswith("$.codec") else p
                        for p in exc.problems]  # fmt: skip
            raise SpecError(problems, self._origin if exc.origin == "spec" else exc.origin) from None

    def _check_prefix(self, uri: str, field: str, what: str) -> None:
        """The API's rule (with a bucket): what the worker fetches lies under the bucket's codecs/ prefix."""
        refused = codecs_prefix_problem(uri, self._bucket, self._local, field, what) if self._bucket else None
        if refused:
            raise SpecError([refused], self._origin)


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

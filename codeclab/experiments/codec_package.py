"""A codec package's manifest (`codec.json`): its one typed shape, its checks, and its params checked at submission.

Lambda-safe (json and jsonschema only): the API checks a package's params against the package's own schema
before anything runs, so a bad one is a 400 (or exit 2 from the CLI). The worker's side, unpacking and
hash-checking a package, is `codeclab.worker.packages`.
"""

from __future__ import annotations

import copy
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from codeclab.experiments.s3_uri import split_s3_uri
from codeclab.experiments.schema import CodecParams, SchemaNode, SpecError, SpecProblem, shortened
from codeclab.experiments.test_sets import catalog_errors, reason_of

PACKAGE_CODEC = "package"  # a spec's codec name for a codec package
MANIFEST_NAME = "codec.json"
MAX_MANIFEST_BYTES = 256 * 1024
# Where a package lives in the artifact bucket: the API takes no other s3:// URI, and the job role reads no other.
CODECS_PREFIX = "codecs/"
DEVICES = ("cuda", "cpu", "any")
FIELDS = ("name", "version", "entry", "weights", "params", "device", "rate_param")
OPTIONAL_FIELDS = ("device", "rate_param")

Device = Literal["cuda", "cpu", "any"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WEIGHTS_FILE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\.safetensors$")


@dataclass(frozen=True)
class CodecManifest:
    """A checked `codec.json`."""

    name: str
    version: str
    entry: str  # dotted module path inside the package, defining encode and decode
    weights: dict[str, str] = field(hash=False)  # file (relative, .safetensors) -> sha256 hex
    params: SchemaNode = field(hash=False)  # a JSON Schema (2020-12) of the package's params, with defaults
    device: Device = "any"
    rate_param: str | None = None  # the param that moves a point along the RD curve, as crf does for x264

    @property
    def entry_files(self) -> tuple[str, str]:
        """Where the entry module may be, relative to the package root: a module file or a package's __init__."""
        base = self.entry.replace(".", "/")
        return f"{base}.py", f"{base}/__init__.py"


class ManifestSource(Protocol):
    """Where a package's codec.json is read from: a local folder or .tar.gz, or an s3:// .tar.gz."""

    def open_archive(self, uri: str) -> IO[bytes]: ...


class FileManifestSource:
    """Local paths from the filesystem; s3:// objects through boto3 (the client made on first use)."""

    def __init__(self, s3: Any = None) -> None:
        self._s3 = s3

    def open_archive(self, uri: str) -> IO[bytes]:
        if uri.startswith("s3://"):
            if self._s3 is None:
                from codeclab.experiments.aws_clients import client as aws_client

                self._s3 = aws_client("s3")
            bucket, key = split_s3_uri(uri)
            body: IO[bytes] = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            return body
        return Path(uri).open("rb")


def manifest_problems(value: object) -> list[SpecProblem]:
    """Every fault of a parsed codec.json, each naming its field and what to write instead."""
    if not isinstance(value, dict):
        return [SpecProblem(f"{MANIFEST_NAME} $", "must be a JSON object with " + ", ".join(FIELDS))]
    problems = [_at("$", f"unknown field {k!r}; valid: {', '.join(FIELDS)}") for k in sorted(set(value) - set(FIELDS))]
    problems += [_at(f"$.{k}", "is required") for k in FIELDS if k not in value and k not in OPTIONAL_FIELDS]
    checks = {"name": _name, "version": _version, "entry": _entry, "weights": _weights, "params": _params}
    checks["device"] = _device
    for key, check in checks.items():
        if key in value:
            message = check(value[key])
            if message:
                problems.append(_at(f"$.{key}", message))
    if "rate_param" in value and not any(p.path == f"{MANIFEST_NAME} $.params" for p in problems):
        message = _rate_param(value["rate_param"], value.get("params"))
        if message:
            problems.append(_at("$.rate_param", message))
    return problems


def parse_manifest(data: bytes, origin: str = MANIFEST_NAME) -> CodecManifest:
    """A CodecManifest from codec.json's bytes; any fault is a SpecError naming the field."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise SpecError([_at("$", f"is {len(data)} bytes; at most {MAX_MANIFEST_BYTES}")], origin)
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError([_at("$", f"not UTF-8 JSON: {shortened(str(exc))}")], origin) from None
    problems = manifest_problems(value)
    if problems:
        raise SpecError(problems, origin)
    return CodecManifest(
        name=value["name"],
        version=value["version"],
        entry=value["entry"],
        weights=dict(value["weights"]),
        params=value["params"],
        device=value.get("device", "any"),
        rate_param=value.get("rate_param"),
    )


def read_manifest(uri: str, source: ManifestSource | None = None) -> CodecManifest:
    """The manifest of the package at `uri` (a folder, or a .tar.gz whose first member is codec.json).

    Only codec.json is read: an archive is streamed up to its first member, so a 500 MB package costs the API
    one small read. `codeclab codec pack` writes codec.json first; the worker checks the rest when it unpacks.
    """
    origin = f"codec package {uri}"
    if not is_archive_uri(uri):
        if uri.startswith("s3://"):
            raise SpecError([SpecProblem("$.codec.uri", "an s3:// package must be a .tar.gz (codeclab codec pack)")])
        try:
            with (Path(uri) / MANIFEST_NAME).open("rb") as stream:  # never more than the cap, even of /dev/zero
                return parse_manifest(stream.read(MAX_MANIFEST_BYTES + 1), origin)
        except (OSError, ValueError) as exc:  # ValueError: a path no filesystem takes (a NUL, a lone surrogate)
            reason = exc.strerror if isinstance(exc, OSError) else "not a path this system can open"
            raise SpecError([SpecProblem("$.codec.uri", f"cannot read {uri}/{MANIFEST_NAME}: {reason}")]) from None
    try:
        with (source or FileManifestSource()).open_archive(uri) as stream:
            return parse_manifest(_first_member(stream, uri), origin)
    except _archive_errors() as exc:
        raise SpecError([SpecProblem("$.codec.uri", f"cannot read the package {uri}: {reason_of(exc)}")]) from None


def resolve_package_params(manifest: CodecManifest, params: CodecParams) -> CodecParams:
    """A package's params checked against its own schema, with that schema's defaults filled in."""
    validator = Draft202012Validator(manifest.params)
    errors = sorted(validator.iter_errors(params), key=lambda e: e.json_path)
    if errors:
        where = f"{manifest.name} {manifest.version}'s params schema"
        problems = [
            SpecProblem("$.codec.params" + e.json_path.removeprefix("$"), shortened(f"{e.message} ({where})"))
            for e in errors
        ]
        raise SpecError(problems)
    filled = copy.deepcopy(params)
    for key, prop in manifest.params.get("properties", {}).items():
        if key not in filled and isinstance(prop, dict) and "default" in prop:
            filled[key] = copy.deepcopy(prop["default"])
    return filled


def codecs_prefix_problem(
    uri: str, bucket: str, local_paths: bool = False, field: str = "$.codec.uri", what: str = "packages"
) -> SpecProblem | None:
    """Why the API refuses a package's (or a learned codec's weights') URI: it takes only objects under
    s3://<artifact bucket>/codecs/, which the job role can read, and local paths in local mode, where the
    worker runs on the same machine."""
    if local_paths and not uri.startswith("s3://"):
        return None
    expected = f"s3://{bucket}/{CODECS_PREFIX}"
    if not uri.startswith(expected) or ".." in PurePosixPath(uri.removeprefix(expected)).parts:
        return SpecProblem(field, f"the API takes {what} under {expected} only; upload it there")
    return None


def is_archive_uri(uri: str) -> bool:
    return uri.endswith((".tar.gz", ".tgz"))


def _first_member(stream: IO[bytes], uri: str) -> bytes:
    with tarfile.open(fileobj=stream, mode="r|gz") as archive:
        member = archive.next()
        if member is None or member.name.removeprefix("./") != MANIFEST_NAME or not member.isfile():
            raise SpecError(
                [
                    SpecProblem(
                        "$.codec.uri",
                        f"{uri}: the archive must start with {MANIFEST_NAME}; write it with codeclab codec pack",
                    )
                ]
            )
        if member.size > MAX_MANIFEST_BYTES:
            raise SpecError([_at("$", f"is {member.size} bytes; at most {MAX_MANIFEST_BYTES}")], uri)
        extracted = archive.extractfile(member)
        return extracted.read() if extracted is not None else b""


def _at(path: str, message: str) -> SpecProblem:
    return SpecProblem(f"{MANIFEST_NAME} {path}", message)


def _name(value: object) -> str:
    ok = isinstance(value, str) and _NAME.match(value)
    return "" if ok else 'must be 1-64 of a-z, 0-9, _ . - (starting with a letter or digit), e.g. "mycodec"'


def _version(value: object) -> str:
    ok = isinstance(value, str) and _VERSION.match(value)
    return "" if ok else 'must be a string of 1-32 of A-Z a-z 0-9 . + _ -, e.g. "0.3"'


def _entry(value: object) -> str:
    ok = isinstance(value, str) and _MODULE.match(value)
    return "" if ok else 'must be a dotted module path inside the package, e.g. "mycodec.codec"'


def _weights(value: object) -> str:
    if not isinstance(value, dict):
        return 'must be an object of file -> sha256, e.g. {"model.safetensors": "<64 hex digits>"}; {} for none'
    for name, digest in value.items():
        if not _WEIGHTS_FILE.match(name) or ".." in name.split("/"):
            return f"{name!r}: weights are .safetensors files at relative paths inside the package (never pickle)"
        if not isinstance(digest, str) or not _SHA256.match(digest):
            return f"{name!r}: the sha256 must be 64 lowercase hex digits (sha256sum {name})"
    return ""


def _params(value: object) -> str:
    if not isinstance(value, dict) or value.get("type") != "object":
        return 'must be a JSON Schema with "type": "object" describing the params, with defaults'
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        return shortened(f"is not a valid JSON Schema (2020-12): {exc.message}")
    for key, prop in value.get("properties", {}).items():
        if isinstance(prop, dict) and "default" in prop:
            error = next(Draft202012Validator(prop).iter_errors(prop["default"]), None)
            if error is not None:
                return shortened(
                    f"properties.{key}: its default {json.dumps(prop['default'])} breaks its own schema: "
                    f"{error.message}"
                )
    return ""


def _rate_param(value: object, params: object) -> str:
    properties = params.get("properties", {}) if isinstance(params, dict) else {}
    if isinstance(value, str) and isinstance(properties, dict) and value in properties:
        return ""
    names = ", ".join(sorted(properties)) if isinstance(properties, dict) else ""
    return f"{json.dumps(value)} must name the param a sweep moves along the RD curve; the params: {names or 'none'}"


def _device(value: object) -> str:
    return "" if value in DEVICES else f"{json.dumps(value)} is not a valid choice; valid: {', '.join(DEVICES)}"


def _archive_errors() -> tuple[type[Exception], ...]:
    """What refuses a package archive: its store (catalog_errors), or a damaged or truncated .tar.gz."""
    return (*catalog_errors(), tarfile.TarError, EOFError)

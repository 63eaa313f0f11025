"""Test sets: the clips a spec's `source.test_set` names, each resolved into a single-clip source.

A test set is builtin (`builtin:mini`), a list in the spec, a folder or s3:// prefix of clips, or a
manifest (.json or .csv) that lists them with their classes and their own fields. Every clip becomes
one sequence: the set's own fields (start, frames, crop, size, fps) apply to each clip that does not
give its own, and each sequence has a unique name (the clip's stem unless the set names it).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol, cast

from codeclab.experiments.s3_uri import split_s3_uri
from codeclab.experiments.schema import ClipEntry, SourceSpec, SpecError, SpecProblem, definition_problems
from codeclab.experiments.sweep import MAX_POINTS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CLIP_SUFFIXES = frozenset({".y4m", ".yuv", ".mp4"})
MANIFEST_SUFFIXES = frozenset({".json", ".csv"})
# Fields a set passes on to each clip that does not give its own: all but the clip and its name.
SHARED_FIELDS = ("start", "frames", "crop", "size", "fps", "width", "height", "pix_fmt", "convert_to", "class")
SEQUENCE_LIMIT = 128  # the schema's limit on $.source.sequence
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # 10,000 clips with every field fit in a few megabytes
# Offline sets built from the shipped clips: two resolution classes, small enough for tests and the demo.
BUILTIN_SETS: dict[str, tuple[ClipEntry, ...]] = {
    "mini": (
        {"clip": "builtin:carphone", "class": "QCIF"},
        {"clip": "builtin:bbb", "class": "180p", "size": [320, 180]},
        {"clip": "builtin:bikes", "class": "180p", "size": [320, 180]},
    ),
}


class ClipCatalog(Protocol):
    """Where a test set's folder or manifest is read: the local filesystem, or S3."""

    def list_clips(self, folder: str) -> list[str]: ...

    def read_text(self, uri: str) -> str: ...


class FileCatalog:
    """Local paths from the filesystem, s3:// URIs through boto3 (created on first use)."""

    def __init__(self, s3: S3Client | None = None) -> None:
        self._s3 = s3

    def list_clips(self, folder: str) -> list[str]:
        if folder.startswith("s3://"):
            return self._list_s3(folder)
        path = Path(folder)
        if not path.is_dir():
            raise LookupError(f"no folder {folder}")
        return [str(path / p.name) for p in sorted(path.iterdir()) if p.suffix.lower() in CLIP_SUFFIXES]

    def read_text(self, uri: str) -> str:
        """A manifest's text; one over MAX_MANIFEST_BYTES is refused before it is read. A BOM (Excel writes one
        into UTF-8 CSV) is not part of the first column's name."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            response = self._client().get_object(Bucket=bucket, Key=key)
            _refuse_huge(response["ContentLength"])
            data = response["Body"].read()
        else:
            path = Path(uri)
            _refuse_huge(path.stat().st_size)
            data = path.read_bytes()
        return data.decode("utf-8-sig")

    def _list_s3(self, prefix_uri: str) -> list[str]:
        bucket, prefix = split_s3_uri(prefix_uri.rstrip("/") + "/")
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return [f"s3://{bucket}/{k}" for k in sorted(keys) if PurePosixPath(k).suffix.lower() in CLIP_SUFFIXES]

    def _client(self) -> S3Client:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3


def catalog_errors() -> tuple[type[Exception], ...]:
    """A filesystem or S3 refusal: said to the user with the location, never a traceback. ValueError: a path no
    filesystem takes (a NUL byte, a lone surrogate). botocore is imported here, when a read failed: a spec
    check and the worker's start-up do not pay for it."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (OSError, ValueError, LookupError, BotoCoreError, ClientError)


def _refuse_huge(size: int) -> None:
    if size > MAX_MANIFEST_BYTES:
        raise OSError(errno.EFBIG, f"it is {size} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}")


def resolve_clips(source: SourceSpec, origin: str, catalog: ClipCatalog) -> tuple[SourceSpec, ...]:
    """Every clip of a checked source as a single-clip source: one for a clip, each of a test set's otherwise."""
    if "test_set" not in source:
        return (source,)
    entries = _entries(source["test_set"], origin, catalog)
    shared: SourceSpec = {k: v for k, v in source.items() if k in SHARED_FIELDS}  # type: ignore[assignment]
    clips = [_clip_source(shared, entry) for entry in entries]
    _refuse_duplicate_sequences(clips, origin)
    return tuple(clips)


def sequence_name(clip: str) -> str:
    """A clip's default sequence name: its file's stem (`carphone` for builtin:carphone)."""
    stem = clip.removeprefix("builtin:") if clip.startswith("builtin:") else PurePosixPath(clip).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:SEQUENCE_LIMIT] or "clip"


def _entries(ref: str | list[str | ClipEntry], origin: str, catalog: ClipCatalog) -> list[ClipEntry]:
    if isinstance(ref, list):
        return [{"clip": e} if isinstance(e, str) else e for e in ref]
    if ref.startswith("builtin:"):  # the schema allows only the names BUILTIN_SETS has
        return list(BUILTIN_SETS[ref.removeprefix("builtin:")])
    if PurePosixPath(ref).suffix.lower() in MANIFEST_SUFFIXES:
        return _manifest(ref, origin, catalog)
    return _folder(ref, origin, catalog)


def _folder(ref: str, origin: str, catalog: ClipCatalog) -> list[ClipEntry]:
    try:
        clips = catalog.list_clips(ref)
    except catalog_errors() as exc:
        raise SpecError([SpecProblem("$.source.test_set", f"cannot list {ref}: {reason_of(exc)}")], origin) from None
    if not clips:
        suffixes = ", ".join(sorted(CLIP_SUFFIXES))
        raise SpecError([SpecProblem("$.source.test_set", f"{ref} holds no clips ({suffixes})")], origin)
    return [{"clip": c} for c in clips]


def _manifest(uri: str, origin: str, catalog: ClipCatalog) -> list[ClipEntry]:
    try:
        text = catalog.read_text(uri)
    except UnicodeDecodeError:
        raise SpecError([SpecProblem("$.source.test_set", f"{uri} is not UTF-8 text")], origin) from None
    except catalog_errors() as exc:
        raise SpecError([SpecProblem("$.source.test_set", f"cannot read {uri}: {reason_of(exc)}")], origin) from None
    rows = _csv_rows(text, uri, origin) if uri.lower().endswith(".csv") else _json_rows(text, uri, origin)
    if len(rows) > MAX_POINTS:  # before each row is checked: a million-row manifest is refused at once
        raise SpecError([SpecProblem(uri, f"{len(rows)} clips; a sweep may have at most {MAX_POINTS} points")], origin)
    problems = [p for where, row in rows for p in definition_problems(row, "test_clip", where)]
    if problems:
        raise SpecError(problems, origin)
    base = _parent(uri)
    return [{**row, "clip": _relative_to(base, row["clip"])} for _, row in rows]  # type: ignore[typeddict-item]


def _json_rows(text: str, uri: str, origin: str) -> list[tuple[str, object]]:
    """A JSON manifest: a list of clips, or {"clips": [...]}; each a clip string or an object."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f"line {exc.lineno} column {exc.colno}: " if isinstance(exc, json.JSONDecodeError) else ""
        raise SpecError([SpecProblem(uri, f"{where}not a JSON manifest")], origin) from None
    if isinstance(value, dict) and set(value) == {"clips"}:
        value = value["clips"]
    if not isinstance(value, list) or not value:
        problem = SpecProblem(uri, 'a JSON manifest is a non-empty list of clips, or {"clips": [...]}')
        raise SpecError([problem], origin)
    return [(f"{uri} clips[{i}]", {"clip": row} if isinstance(row, str) else row) for i, row in enumerate(value)]


def _csv_rows(text: str, uri: str, origin: str) -> list[tuple[str, object]]:
    """A CSV manifest with a header: uri (or clip), and any of sequence, class, start, frames, size (WxH), fps,
    and a raw .yuv clip's width, height and pix_fmt."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    known = {"uri", "clip", "sequence", "class", "start", "frames", "size", "fps", "width", "height", "pix_fmt"}
    unknown = sorted(set(columns) - known)
    if not ({"uri", "clip"} & set(columns)) or unknown:
        wrong = f"unknown columns {', '.join(unknown)}; " if unknown else ""
        problem = SpecProblem(f"{uri} line 1", f"{wrong}the header needs uri and may have {', '.join(sorted(known))}")
        raise SpecError([problem], origin)
    rows: list[tuple[str, object]] = []
    for line in reader:
        cells = {k.strip(): (v or "").strip() for k, v in line.items() if k is not None}
        if any(cells.values()):
            rows.append((f"{uri} line {reader.line_num}", _csv_row(cells)))
    if not rows:
        raise SpecError([SpecProblem(uri, "the manifest lists no clips")], origin)
    return rows


def _csv_row(cells: dict[str, str]) -> dict[str, object]:
    """One CSV row as a clip object: numbers as numbers, size as [w, h]; unreadable cells stay text for the check."""
    row: dict[str, object] = {"clip": cells.get("uri") or cells.get("clip", "")}
    for key in ("sequence", "class", "pix_fmt"):
        if cells.get(key):
            row[key] = cells[key]
    for key in ("start", "frames", "width", "height"):
        if cells.get(key):
            row[key] = int(cells[key]) if cells[key].isdigit() else cells[key]
    if cells.get("size"):
        width, _, height = cells["size"].lower().partition("x")
        row["size"] = [int(width), int(height)] if width.isdigit() and height.isdigit() else cells["size"]
    if cells.get("fps"):
        row["fps"] = _number_or_text(cells["fps"])
    return row


def _number_or_text(text: str) -> object:
    try:
        return float(text) if "/" not in text else text
    except ValueError:
        return text


def _parent(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else ""


def _relative_to(base: str, clip: str) -> str:
    """A manifest's relative clip path is relative to the manifest, as a researcher writes it beside the clips."""
    if not base or clip.startswith(("builtin:", "s3://", "/")):
        return clip
    if base.startswith("s3://"):
        bucket, prefix = split_s3_uri(base + "/")
        return f"s3://{bucket}/{posixpath.normpath(f'{prefix}{clip}')}"
    return posixpath.normpath(f"{base}/{clip}")


def _clip_source(shared: SourceSpec, entry: ClipEntry) -> SourceSpec:
    source = cast(SourceSpec, {**shared, **entry})
    source.setdefault("sequence", sequence_name(entry["clip"]))
    return source


def _refuse_duplicate_sequences(clips: Sequence[SourceSpec], origin: str) -> None:
    seen: dict[str, int] = {}
    problems = []
    for index, clip in enumerate(clips):
        name = clip["sequence"]
        if name in seen:
            message = f"clips {seen[name]} and {index} are both sequence {name!r}; give one of them its own `sequence`"
            problems.append(SpecProblem("$.source.test_set", message))
        seen.setdefault(name, index)
    if problems:
        raise SpecError(problems, origin)


def reason_of(exc: BaseException) -> str:
    """Why a read failed, in a few lowercase words for the end of a message (errno text, or the error's own)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__

"""Test sets: builtin, listed, folder, manifest and s3:// forms resolve into one sequence per clip, swept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from codeclab.experiments import SpecError, validate_spec
from codeclab.experiments.schema import check_document, load_schema
from codeclab.experiments.sweep import MAX_POINTS
from codeclab.experiments.test_sets import BUILTIN_SETS, MAX_MANIFEST_BYTES, FileCatalog


def spec(source: dict, **extra: object) -> dict:
    return {"name": "set", "source": source, "codec": {"name": "x264"}, **extra}


def problems(value: dict) -> list[str]:
    with pytest.raises(SpecError) as raised:
        validate_spec(value)
    return [str(p) for p in raised.value.problems]


def clip_files(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # resolution lists files; the worker reads them


def test_builtin_mini_is_three_sequences_in_two_classes_crossed_with_codecs_and_rates() -> None:
    sweep = {"codecs": [{"name": "x264"}, {"name": "x265"}], "crf": [22, 27, 32, 37]}
    checked = validate_spec(spec({"test_set": "builtin:mini", "frames": 3}, sweep=sweep))
    assert checked.is_sweep and len(checked.points) == 24
    sources = [p.spec["source"] for p in checked.points]
    assert [s["sequence"] for s in sources[::8]] == ["carphone", "bbb", "bikes"]  # clip, then codec, then grid
    assert {s["sequence"]: s.get("class") for s in sources} == {"carphone": "QCIF", "bbb": "180p", "bikes": "180p"}
    assert all(s["frames"] == 3 and "test_set" not in s for s in sources)  # the set's own fields reach every clip
    assert checked.points[9].label == "bbb x264 crf=27"
    assert checked.points[9].spec["codec"] == {"name": "x264", "params": {"crf": 27, "preset": "medium", "threads": 1},
                                               "trusted": False}  # fmt: skip


def test_a_test_set_alone_is_a_sweep_over_its_clips() -> None:
    checked = validate_spec(spec({"test_set": ["a.y4m", "b.y4m"]}))
    assert [p.label for p in checked.points] == ["a x264", "b x264"]


def test_a_clip_of_a_list_overrides_the_sets_fields_and_keeps_its_own_name_and_class() -> None:
    clips = ["builtin:carphone", {"clip": "clips/x.y4m", "sequence": "Crowd", "class": "B", "frames": 2, "start": 5}]
    first, second = (p.spec["source"] for p in validate_spec(spec({"test_set": clips, "frames": 8})).points)
    assert first == {"clip": "builtin:carphone", "sequence": "carphone", "start": 0, "frames": 8}
    assert second == {"clip": "clips/x.y4m", "sequence": "Crowd", "class": "B", "start": 5, "frames": 2}


def test_a_folder_is_every_clip_in_it_in_name_order(tmp_path: Path) -> None:
    clip_files(tmp_path / "set", "b.y4m", "a.Y4M", "notes.txt", "c.mp4")
    checked = validate_spec(spec({"test_set": str(tmp_path / "set")}))
    expected = [str(tmp_path / "set" / n) for n in ("a.Y4M", "b.y4m", "c.mp4")]
    assert [p.spec["source"]["clip"] for p in checked.points] == expected


def test_an_empty_or_missing_folder_says_where_and_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert problems(spec({"test_set": str(tmp_path / "empty")})) == [
        f"$.source.test_set: {tmp_path / 'empty'} holds no clips (.mp4, .y4m, .yuv)"
    ]
    assert problems(spec({"test_set": str(tmp_path / "nope")})) == [
        f"$.source.test_set: cannot list {tmp_path / 'nope'}: no folder {tmp_path / 'nope'}"
    ]


def test_a_json_manifest_lists_clips_relative_to_itself(tmp_path: Path) -> None:
    manifest = tmp_path / "sets" / "ctc.json"
    manifest.parent.mkdir()
    rows = ["../clips/a.y4m", {"clip": "b.y4m", "class": "C", "frames": 2}, {"clip": "s3://bucket/c.y4m"}]
    manifest.write_text(json.dumps({"clips": rows}))
    sources = [p.spec["source"] for p in validate_spec(spec({"test_set": str(manifest)})).points]
    expected = [str(tmp_path / "clips/a.y4m"), str(tmp_path / "sets/b.y4m"), "s3://bucket/c.y4m"]
    assert [s["clip"] for s in sources] == expected
    assert sources[1]["class"] == "C" and sources[1]["frames"] == 2


def test_a_csv_manifest_reads_numbers_and_sizes_and_names_a_bad_line(tmp_path: Path) -> None:
    manifest = tmp_path / "ctc.csv"
    manifest.write_text("uri,class,frames,size,fps\na.y4m,B,3,64x32,30000/1001\nb.y4m,C,,,25\n")
    first, second = (p.spec["source"] for p in validate_spec(spec({"test_set": str(manifest)})).points)
    assert first == {"clip": str(tmp_path / "a.y4m"), "sequence": "a", "class": "B", "start": 0, "frames": 3,
                     "size": [64, 32], "fps": "30000/1001"}  # fmt: skip
    assert second["fps"] == 25.0 and "frames" not in second

    manifest.write_text("uri,width,height,pix_fmt\nraw.yuv,832,480,yuv420p10le\n")
    (raw,) = (p.spec["source"] for p in validate_spec(spec({"test_set": str(manifest)})).points)
    assert (raw["width"], raw["height"], raw["pix_fmt"]) == (832, 480, "yuv420p10le")

    manifest.write_text("uri,class,frames\na.y4m,B,3\nb.avi,C,three\n")
    found = problems(spec({"test_set": str(manifest)}))
    assert len(found) == 2 and all(p.startswith(f"{manifest} line 3: ") for p in found)
    assert any("frames: 'three' is not of type 'integer'" in p for p in found)
    manifest.write_text("path,cls\na.y4m,B\n")
    (header,) = problems(spec({"test_set": str(manifest)}))
    assert header.startswith(f"{manifest} line 1: unknown columns cls, path; the header needs uri")


def test_a_manifest_that_is_not_utf8_json_or_a_list_is_refused_by_name(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    for body, expected in [
        (b"\xff\xfe[]", f"$.source.test_set: {manifest} is not UTF-8 text"),
        (b"[1,", f"{manifest}: line 1 column 4: not a JSON manifest"),
        (b'{"sequences": []}', f'{manifest}: a JSON manifest is a non-empty list of clips, or {{"clips": [...]}}'),
        (b"[" * 100_000, f"{manifest}: not a JSON manifest"),
    ]:
        manifest.write_bytes(body)
        assert problems(spec({"test_set": str(manifest)})) == [expected]


def test_two_clips_with_one_sequence_name_are_refused() -> None:
    (found,) = problems(spec({"test_set": ["a/x.y4m", "b/x.y4m"]}))
    assert found == "$.source.test_set: clips 0 and 1 are both sequence 'x'; give one of them its own `sequence`"


def test_the_source_is_a_clip_or_a_test_set_and_clips_are_not_a_grid() -> None:
    assert problems(spec({"clip": "a.y4m", "test_set": "builtin:mini"})) == [
        "$.source: give exactly one of clip, test_set"
    ]
    assert problems(spec({"test_set": "builtin:huge"})) == [
        '$.source.test_set: "builtin:huge" is not valid; expected builtin:mini, a local folder or s3:// prefix of '
        "clips, or a manifest (.json or .csv, local or s3://)"
    ]
    (grid,) = problems(spec({"clip": "a.y4m"}, sweep={"clip": ["a.y4m", "b.y4m"], "crf": [20, 30]}))
    assert grid.startswith("$.sweep.clip: clip is a source field, not a codec parameter: name the clips in")


def test_a_problem_shared_by_many_points_is_said_once() -> None:
    (found,) = problems(spec({"test_set": "builtin:mini"}, sweep={"codecs": [{"name": "jpeg"}], "crf": [20, 30]}))
    assert found.startswith("$.sweep.codecs[0]: 6 points (point 0 (carphone jpeg crf=20), ...): $.codec.params:")


def test_the_point_cap_counts_clips_too() -> None:
    clips = [f"c{i}.y4m" for i in range(MAX_POINTS // 2 + 1)]
    (found,) = problems(spec({"test_set": clips}, sweep={"crf": [20, 30]}))
    assert found == f"$.sweep: {len(clips) * 2} points; a sweep may have at most {MAX_POINTS}, split it up"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 client of moto's, with a bucket named clips."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="clips")
        yield client


def test_an_s3_prefix_and_an_s3_manifest_resolve_through_the_catalog(s3: Any) -> None:
    for key in ("ctc/a.y4m", "ctc/B_832x480_60_10bit.yuv", "ctc/deeper/c.y4m", "ctc/readme.md", "other/d.y4m"):
        s3.put_object(Bucket="clips", Key=key, Body=b"")
    s3.put_object(Bucket="clips", Key="ctc/set.csv", Body=b"uri,class\na.y4m,B\n")
    catalog = FileCatalog(s3)

    listed = validate_spec(spec({"test_set": "s3://clips/ctc/"}), catalog=catalog)
    assert [p.spec["source"]["clip"] for p in listed.points] == [
        "s3://clips/ctc/B_832x480_60_10bit.yuv",
        "s3://clips/ctc/a.y4m",
    ]
    (point,) = validate_spec(spec({"test_set": "s3://clips/ctc/set.csv"}), catalog=catalog).points
    assert point.spec["source"]["clip"] == "s3://clips/ctc/a.y4m" and point.spec["source"]["class"] == "B"
    (missing,) = problems_with(spec({"test_set": "s3://clips/none.json"}), catalog)
    assert missing.startswith("$.source.test_set: cannot read s3://clips/none.json: ")


def problems_with(value: dict, catalog: FileCatalog) -> list[str]:
    with pytest.raises(SpecError) as raised:
        validate_spec(value, catalog=catalog)
    return [str(p) for p in raised.value.problems]


def test_a_point_assembled_from_checked_parts_is_what_a_whole_document_check_gives() -> None:
    sweep = {"codecs": [{"name": "x264", "params": {"preset": "fast"}}, {"name": "x265"}], "crf": [20, 30]}
    checked = validate_spec(spec({"test_set": "builtin:mini", "frames": 2}, sweep=sweep))
    assert len(checked.points) == 12 and all(check_document(p.spec) == p.spec for p in checked.points)


def test_a_clip_the_sets_own_fields_do_not_fit_is_named_with_its_points() -> None:
    (found,) = problems(
        spec({"test_set": ["a.y4m", "b_64x32.yuv"], "width": 64, "height": 32}, sweep={"crf": [20, 30]})
    )
    assert found.startswith("$.source.test_set: 2 points (point 0 (a x264 crf=20), ...): $.source: ")
    assert "raw .yuv clips only" in found


def test_the_schema_names_exactly_the_builtin_sets() -> None:
    pattern = load_schema()["$defs"]["test_set"]["then"]["pattern"]
    assert pattern.startswith("^(builtin:" + "|".join(BUILTIN_SETS) + "|")


def test_a_csv_from_excel_with_a_bom_reads_its_header(tmp_path: Path) -> None:
    manifest = tmp_path / "excel.csv"
    manifest.write_bytes("uri,class\r\na.y4m,B\r\n".encode("utf-8-sig"))
    (point,) = validate_spec(spec({"test_set": str(manifest)})).points
    assert point.spec["source"]["class"] == "B"


def test_a_huge_or_endless_manifest_is_refused_before_its_rows_are_checked(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:
        file.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: nothing is written, nothing is read
    (found,) = problems(spec({"test_set": str(huge)}))
    assert found == (f"$.source.test_set: cannot read {huge}: it is {MAX_MANIFEST_BYTES + 1} bytes; "
                     f"a manifest may have at most {MAX_MANIFEST_BYTES}")  # fmt: skip
    many = tmp_path / "many.csv"
    many.write_text("uri\n" + "".join(f"c{i}.y4m\n" for i in range(MAX_POINTS + 1)))
    (found,) = problems(spec({"test_set": str(many)}))
    assert found == f"{many}: {MAX_POINTS + 1} clips; a sweep may have at most {MAX_POINTS} points"


def test_an_s3_manifests_relative_paths_stay_in_its_bucket(s3: Any) -> None:
    s3.put_object(Bucket="clips", Key="sets/ctc/set.json", Body=b'["../../raw/a.y4m", "b.y4m"]')
    checked = validate_spec(spec({"test_set": "s3://clips/sets/ctc/set.json"}), catalog=FileCatalog(s3))
    assert [p.spec["source"]["clip"] for p in checked.points] == ["s3://clips/raw/a.y4m", "s3://clips/sets/ctc/b.y4m"]


def test_a_sets_class_is_every_clips_unless_it_gives_its_own_and_a_set_has_no_one_sequence_name() -> None:
    clips = ["a.y4m", {"clip": "b.y4m", "class": "C"}]
    first, second = (p.spec["source"] for p in validate_spec(spec({"test_set": clips, "class": "B"})).points)
    assert (first["class"], second["class"]) == ("B", "C")
    assert problems(spec({"test_set": clips, "sequence": "one"})) == [
        "$.source: sequence not allowed here (sequence names one clip; give each clip of a test set its own sequence)"
    ]


def test_a_path_no_filesystem_takes_is_refused_by_name() -> None:
    for ref in ("bad\x00set", "bad\x00set.csv", "bad\udcffset.json"):
        (found,) = problems(spec({"test_set": ref}))
        assert found.startswith("$.source.test_set: cannot ")

"""The spec contract: schema validation with readable errors, and its defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from codeclab.experiments import (
    SpecError,
    codec_names,
    load_spec_file,
    resolve_codec_params,
    validate_spec,
)
from codeclab.experiments.schema import load_schema

REPO = Path(__file__).resolve().parents[2]


def minimal(**overrides: object) -> dict:
    spec = {
        "name": "t",
        "source": {"clip": "builtin:carphone", "frames": 4},
        "codec": {"name": "x264", "params": {"crf": 28}},
    }
    spec.update(overrides)
    return spec


def problems(spec: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_spec(spec)
    return [str(p) for p in info.value.problems]


def test_schema_is_valid_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)  # load_schema trusts the file it ships with: this is its check
    broken = {**schema, "properties": {**schema["properties"], "name": {"type": "text"}}}
    with pytest.raises(SchemaError):  # control: the check does see a broken schema
        Draft202012Validator.check_schema(broken)


def test_defaults_are_filled_from_the_schema() -> None:
    spec = validate_spec(minimal()).document
    assert spec["source"]["start"] == 0
    assert spec["limits"] == {"timeout_seconds": 900, "stall_seconds": 120}
    assert spec["metrics"] == {"vmaf": "auto"}
    assert spec["codec"]["params"] == {"crf": 28, "preset": "medium", "threads": 1}


def test_an_explicit_qp_gets_no_default_crf_beside_it() -> None:
    spec = validate_spec(minimal(codec={"name": "x264", "params": {"qp": 30}})).document
    assert spec["codec"]["params"] == {"qp": 30, "preset": "medium", "threads": 1}


def test_validation_does_not_modify_the_input() -> None:
    spec = minimal()
    before = json.dumps(spec, sort_keys=True)
    validate_spec(spec)
    assert json.dumps(spec, sort_keys=True) == before


def test_crf_out_of_range_names_the_path_and_the_limit() -> None:
    spec = minimal(codec={"name": "x264", "params": {"crf": 60}})
    assert problems(spec) == ["$.codec.params.crf: 60 is greater than the maximum of 51"]


def test_unknown_codec_lists_the_valid_ones() -> None:
    (problem,) = problems(minimal(codec={"name": "x266"}))
    assert problem.startswith('$.codec.name: "x266" is not a valid choice; valid: "x264", "x265"')


def test_unknown_parameter_lists_the_valid_parameters() -> None:
    (problem,) = problems(minimal(codec={"name": "jpeg", "params": {"qualty": 50}}))
    assert problem == "$.codec.params: unknown parameter 'qualty'; valid: quality"


def test_crf_and_qp_together_are_refused() -> None:
    (problem,) = problems(minimal(codec={"name": "x265", "params": {"crf": 30, "qp": 30}}))
    assert problem == "$.codec.params: give at most one of crf, qp"


def test_odd_size_is_refused_with_the_reason() -> None:
    spec = minimal(source={"clip": "builtin:bbb", "size": [447, 256]})
    assert problems(spec) == ["$.source.size[0]: 447 is odd; yuv420p needs even sizes and offsets"]


def test_zero_frames_is_refused() -> None:
    spec = minimal(source={"clip": "builtin:carphone", "frames": 0})
    assert problems(spec) == ["$.source.frames: 0 is less than the minimum of 1"]


def test_bad_clip_says_what_is_accepted() -> None:
    (problem,) = problems(minimal(source={"clip": "movie.avi"}))
    assert problem.startswith('$.source.clip: "movie.avi" is not valid; expected builtin:carphone')


def test_raw_yuv_fields_are_for_yuv_clips_and_come_in_pairs() -> None:
    raw = {"clip": "clips/BQMall.yuv", "width": 832, "height": 480, "pix_fmt": "yuv420p10le", "fps": 60}
    validate_spec(minimal(source=raw))
    validate_spec(minimal(source={"clip": "s3://bucket/BQMall_832x480_60.yuv", "sequence": "BQMall", "class": "C"}))
    assert problems(minimal(source={**raw, "clip": "clip.y4m"})) == [
        "$.source: width, height, pix_fmt not allowed here (width, height and pix_fmt describe raw .yuv clips only; "
        "a .y4m or .mp4 clip carries them in its header)"
    ]
    assert problems(minimal(source={"clip": "a.yuv", "width": 832})) == ["$.source: width needs height beside it"]
    (problem,) = problems(minimal(source={"clip": "a.yuv", "pix_fmt": "yuv420p12le"}))
    assert problem.startswith('$.source.pix_fmt: "yuv420p12le" is not a valid choice; valid: "yuv420p", "yuv420p10le"')
    (problem,) = problems(minimal(source={"clip": "builtin:carphone", "convert_to": "yuv420p10le"}))
    assert problem.startswith("$.source.convert_to:")


def test_every_problem_is_reported_in_document_order() -> None:
    found = problems({"source": {"clip": "builtin:carphone", "colour": 1}, "codec": {"name": "vp9"}})
    assert found == [
        "$: 'name' is a required property",
        "$.source: unknown field 'colour'; valid: class, clip, convert_to, crop, fps, frames, height, pix_fmt, "
        "sequence, size, start, test_set, width",
    ]


def test_one_problem_reads_as_one_line() -> None:
    with pytest.raises(SpecError) as info:
        validate_spec(minimal(limits={"stall_seconds": 0}))
    assert str(info.value) == "invalid spec: $.limits.stall_seconds: 0 is less than the minimum of 1"


def test_fps_accepts_a_number_or_a_fraction_string() -> None:
    validate_spec(minimal(source={"clip": "builtin:carphone", "fps": "30000/1001"}))
    validate_spec(minimal(source={"clip": "builtin:carphone", "fps": 25}))
    (problem,) = problems(minimal(source={"clip": "builtin:carphone", "fps": "30 fps"}))
    assert problem.startswith('$.source.fps: "30 fps" is not valid; expected The clip\'s frame rate')


def test_sweep_grid_and_codec_list_validate_their_entries() -> None:
    spec = validate_spec(minimal(sweep={"codecs": [{"name": "jpeg"}, {"name": "webp", "params": {"quality": 40}}]}))
    assert spec.document["sweep"]["codecs"][0]["params"] == {"quality": 75}
    assert [p.label for p in spec.points] == ["jpeg", "webp"]  # expanded once, by the same check
    assert spec.points[1].spec["codec"]["params"] == {"quality": 40}
    (problem,) = problems(minimal(sweep={"codecs": [{"name": "jpeg", "params": {"quality": 101}}]}))
    assert problem == "$.sweep.codecs[0].params.quality: 101 is greater than the maximum of 100"
    # every point must be a valid experiment: a crf grid cannot apply to jpeg
    (problem,) = problems(minimal(sweep={"crf": [23], "codecs": [{"name": "jpeg"}]}))
    assert problem == (
        "$.sweep.codecs[0]: point 0 (jpeg crf=23): $.codec.params: unknown parameter 'crf'; valid: quality"
    )


def test_a_grid_key_scoped_to_a_codec_sweeps_only_that_codecs_entries() -> None:
    sweep = {"codecs": [{"name": "jpeg"}, {"name": "x265"}], "jpeg.quality": [30, 60], "x265.crf": [39, 43, 47]}
    spec = validate_spec(minimal(sweep=sweep))
    assert [p.label for p in spec.points] == [
        "jpeg quality=30", "jpeg quality=60", "x265 crf=39", "x265 crf=43", "x265 crf=47",
    ]  # fmt: skip
    assert spec.points[3].spec["codec"]["params"] == {"crf": 43, "preset": "medium", "threads": 1}
    # an unscoped key still applies to every entry, crossed with the scoped ones
    both = validate_spec(minimal(sweep={"codecs": [{"name": "x264"}, {"name": "x265"}], "x265.preset": ["fast"],
                                        "crf": [30, 40]}))  # fmt: skip
    assert [p.label for p in both.points] == ["x264 crf=30", "x264 crf=40", "x265 preset=fast crf=30",
                                              "x265 preset=fast crf=40"]  # fmt: skip


def test_a_scoped_grid_key_names_a_codec_of_the_sweep_and_sweeps_a_param_once() -> None:
    codecs = [{"name": "jpeg"}, {"name": "x265"}]
    assert problems(minimal(sweep={"codecs": codecs, "x264.crf": [20]})) == [
        "$.sweep.x264.crf: no codec entry of the sweep is 'x264'; its codecs: jpeg, x265"
    ]
    assert problems(minimal(sweep={"codecs": codecs, ".crf": [20]})) == [
        "$.sweep..crf: no codec entry of the sweep is ''; its codecs: jpeg, x265"
    ]
    assert problems(minimal(sweep={"codecs": codecs, "crf": [20], "x265.crf": [30]})) == [
        "$.sweep.x265.crf: crf is swept twice for one codec, also by $.sweep.crf"
    ]
    assert problems(minimal(sweep={"codecs": codecs, "jpeg.frames": [2]}))[0].startswith(
        "$.sweep.jpeg.frames: frames is a source field, not a codec parameter"
    )
    # two codecs' own crf are two params; a key scoped to one codec still meets that codec's schema
    validate_spec(minimal(sweep={"codecs": [{"name": "x264"}, {"name": "x265"}], "x264.crf": [20], "x265.crf": [30]}))
    (problem,) = problems(minimal(sweep={"codecs": codecs, "jpeg.quality": [101]}))
    assert problem.startswith("$.sweep.codecs[0]: point 0 (jpeg quality=101): $.codec.params.quality: 101 is greater")


def test_resolve_codec_params_checks_params_on_their_own() -> None:
    assert resolve_codec_params("svtav1", {}) == {"crf": 35, "preset": 8, "threads": 1}
    with pytest.raises(SpecError, match=r"\$\.codec\.params\.preset: 14 is greater than the maximum of 13"):
        resolve_codec_params("svtav1", {"preset": 14})
    with pytest.raises(SpecError, match="unknown codec 'h266'; valid: x264"):
        resolve_codec_params("h266", {})


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "source": {"clip": "builtin:carphone"}\n "codec": {}}')
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert str(info.value) == f"invalid {path}: line 3 column 2: not valid JSON: Expecting ',' delimiter"


def test_every_example_spec_is_valid() -> None:
    examples = sorted((REPO / "examples").glob("*.json"))
    assert examples
    examples.append(REPO / "codeclab" / "demo-sweep.json")  # `make demo`'s, shipped in the package
    for path in examples:
        load_spec_file(path)


def test_codec_names_come_from_the_schema() -> None:
    assert codec_names() == ["x264", "x265", "svtav1", "vp9", "jpeg", "webp", "avif", "learned", "custom", "package"]


def test_experiments_package_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, codeclab.experiments as e; e.validate_spec({'name':'a','source':{'clip':'builtin:bbb'},"
        "'codec':{'name':'x264'}}); heavy = {'numpy','torch','cv2','av'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

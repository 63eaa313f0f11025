"""The terminal's summary table: what a researcher reads after a run."""

from __future__ import annotations

from rich.console import Console

from codeclab.terminal import summary_table


def rendered(records: list[dict]) -> str:
    console = Console(width=250, record=True)
    console.print(summary_table(records))
    return console.export_text()


def point(experiment_id: str, source: dict) -> dict:
    spec = {"source": source, "codec": {"name": "x264", "params": {"crf": 27, "threads": 1}}}
    return {"experiment_id": experiment_id, "status": "SUCCEEDED", "spec": spec}


def test_a_test_sets_points_name_their_sequence_and_one_clip_needs_no_column() -> None:
    text = rendered([point("exp_a", {"clip": "a.y4m", "sequence": "BQMall"}), point("exp_b", {"clip": "b.y4m"})])
    header = text.splitlines()[1]
    assert "sequence" in header and "BQMall" in text and "crf=27" in text and "threads" not in text
    assert "sequence" not in rendered([point("exp_c", {"clip": "c.y4m"})])


def test_a_package_is_named_by_the_package_and_version_its_result_records_and_slow_fps_keep_a_decimal() -> None:
    spec = {"source": {"clip": "a.y4m"}, "codec": {"name": "package", "uri": "pkg", "params": {"quality": 3}}}
    package = {"name": "hyperprior", "version": "0.1.0+q3.f8fb558db60c", "tree_sha256": "0" * 64, "weights": {}}
    result = {"conditions": {"codec": {"package": package}}, "metrics": {"encode_fps": 0.44, "decode_fps": 12.6}}
    text = rendered([{"experiment_id": "exp_p", "status": "SUCCEEDED", "spec": spec, "result": result}])
    assert "hyperprior 0.1.0+q3.f8fb558db60c" in text and "│ package" not in text
    assert "0.4" in text and "13" in text
    queued = rendered([{"experiment_id": "exp_q", "status": "QUEUED", "spec": spec}])
    assert "package" in queued  # no result yet: the spec's name is all there is

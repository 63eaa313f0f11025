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

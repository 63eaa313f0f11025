"""What every command shows in the terminal: one wide console, the progress bar and the results table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from codeclab.experiments.record import ExperimentRecord

MIN_WIDTH = 170  # pipes and CI logs report 80 columns, which folds every table


def wide_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    console.width = max(console.width, MIN_WIDTH)
    return console


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def show_record_progress(bar: Progress, task: TaskID, record: ExperimentRecord, label: str) -> None:
    """Move a progress bar to the stage and frames a record reports (its status before the worker starts)."""
    progress = record.get("progress")
    if progress is None:
        bar.update(task, description=f"{label}: {record['status'].lower()}", completed=0, total=None)
        return
    total = progress["frames_total"] or None  # 0 while the worker does not know the count yet
    bar.update(task, description=f"{label}: {progress['stage']}", completed=progress["frames_done"], total=total)


def summary_table(records: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """One row per experiment record (or a sweep's summary of a point): status, codec settings, rate and quality,
    speed, error type. Read defensively, field by field: a row may be any of those shapes."""
    table = Table(title=title)
    sequences = [((r.get("spec") or {}).get("source") or {}).get("sequence") for r in records]
    by_sequence = any(sequences)  # a test set's points: say which sequence each one coded
    columns = (
        "experiment",
        "status",
        *(["sequence"] if by_sequence else []),
        "codec",
        "params",
        "bytes",
        "bpp",
        "PSNR-YUV",
        "SSIM",
        "VMAF",
        "enc fps",
        "dec fps",
        "error",
    )
    for column in columns:
        table.add_column(
            column,
            no_wrap=True,
            justify="left" if column in {"experiment", "status", "sequence", "codec", "params", "error"} else "right",
        )
    for record, sequence in zip(records, sequences, strict=True):
        result = record.get("result") or {}
        m = result.get("metrics") or {}
        codec = (record.get("spec") or {}).get("codec", {})
        params = " ".join(f"{k}={v}" for k, v in codec.get("params", {}).items() if k != "threads")
        if "point_count" in record:  # a sweep: its points carry the codecs and the numbers
            codec, params = {"name": "sweep"}, f"{record['point_count']} points"
        numbers = [_fmt(m.get(k), d) for k, d in (("bpp", 4), ("psnr_yuv", 2), ("ssim", 4), ("vmaf", 2))]
        numbers += [_fmt(m.get(k), _fps_digits(m.get(k))) for k in ("encode_fps", "decode_fps")]
        size = str((result.get("bitstream") or {}).get("bytes", "-"))
        error = (record.get("error") or {}).get("type", "")
        named = [sequence or ""] if by_sequence else []
        name = _codec_name(codec.get("name", ""), result)
        table.add_row(record["experiment_id"], record["status"], *named, name, params, size, *numbers, error)
    return table


def _codec_name(name: str, result: Mapping[str, Any]) -> str:
    """A codec package by the name and version its result records (as reports name its curve), not `package`."""
    package = ((result.get("conditions") or {}).get("codec") or {}).get("package")
    if name == "package" and isinstance(package, Mapping) and {"name", "version"} <= package.keys():
        return f"{package['name']} {package['version']}"
    return name


def _fps_digits(fps: float | None) -> int:
    """One decimal under 10 fps: a sandboxed codec's 0.4 fps must not read as 0."""
    return 1 if fps is not None and fps < 10 else 0


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

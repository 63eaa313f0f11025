"""`codeclab`: run experiments through the workflow, locally or on AWS, and read their records."""

from __future__ import annotations

import json
import signal
import sys
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from codeclab.experiments import Spec, SpecError, codec_names, codec_param_schema, load_spec_file
from codeclab.experiments.schema import SpecDocument
from codeclab.experiments.statuses import Status
from codeclab.local.client import call_api
from codeclab.terminal import progress_bar, show_record_progress, summary_table, wide_console

console = wide_console()
err = wide_console(stderr=True)


# Documented exit codes of an interrupted command: 128 + the signal, as shells report it.
INTERRUPTED_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
_signals_received: list[int] = []


def _interrupted(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM unwind as KeyboardInterrupt; which one came decides the exit code."""
    _signals_received.append(signum)
    raise KeyboardInterrupt


def _interrupt_exit_code() -> int:
    return INTERRUPTED_EXIT[signal.Signals(_signals_received[-1] if _signals_received else signal.SIGINT)]


def main() -> None:
    for signum in INTERRUPTED_EXIT:
        signal.signal(signum, _interrupted)
    try:
        code = cli.main(prog_name="codeclab", standalone_mode=False)
    except (KeyboardInterrupt, click.Abort):  # before anything ran, or in a command with nothing to stop
        err.print("interrupted")
        sys.exit(_interrupt_exit_code())
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Neural video codec experiments: one workflow, on AWS or on this machine."""


runs_dir_option = click.option(
    "--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
    help="the local system of record: one folder per experiment",
)  # fmt: skip
stack_option = click.option("--stack", help="a deployed codeclab stack (CloudFormation name): act on AWS, not locally")


def _load_spec(path: Path) -> Spec:
    try:
        return load_spec_file(path)
    except SpecError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)


@cli.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@runs_dir_option
@click.option("--no-wait", is_flag=True, help="submit to a running `codeclab serve` and return at once")
def run(spec: Path, runs_dir: Path, no_wait: bool) -> None:
    """Run SPEC through the local workflow.

    Exit 0 when it SUCCEEDED, 1 otherwise, 2 for a bad spec; 130 (143) when Ctrl-C (SIGTERM) stopped it,
    after cancelling what ran and keeping it, ABORTED, in runs/. A second Ctrl-C stops at once.
    """
    parsed = _load_spec(spec)
    _check_local_clips(parsed.document, spec)
    if no_wait:
        serve = next(iter(_runs(runs_dir).endpoints(kind="serve")), None)
        if serve is None:
            err.print(f"[red]error:[/] no `codeclab serve` is running on {runs_dir}; start one, or drop --no-wait")
            sys.exit(2)
        status, body = _call(serve.url + "/experiments", "POST", spec.read_bytes())
        _print_json(body)
        sys.exit(0 if status == 202 else 2)
    from codeclab.experiments import api
    from codeclab.local import runner  # the emulator's imports are heavy: only commands that need it pay

    with _local_service(runs_dir, kind="run") as service:
        try:
            submitted = runner.submit(service.cloud, json.loads(spec.read_text()))
        except api.ApiError as exc:
            err.print(f"[red]error:[/] {exc.message}")
            sys.exit(2)
        console.print(f"{submitted['experiment_id']}  {submitted['execution_arn']}")
        try:
            with progress_bar(console) as bar:
                task = bar.add_task("queued", total=None)
                record = runner.wait(
                    service.cloud, submitted, lambda r: show_record_progress(bar, task, r, r["status"].lower())
                )
        except KeyboardInterrupt:
            _stop(service)
        try:
            outcome = runner.collect(service.cloud, record, runs_dir)
        except OSError as exc:
            service.unsynced.add(record["experiment_id"])
            err.print(f"[red]{record['status']}[/], but {runs_dir} refused its artifacts: {exc.strerror}")
            sys.exit(1)
    if outcome.points:
        console.print(summary_table(outcome.points, title=f"sweep {outcome.experiment_id}: {outcome.status}"))
        console.print(f"report: codeclab report {outcome.experiment_id}")
    else:
        console.print(summary_table([outcome.record]))
    console.print(f"record and artifacts: {outcome.folder}")
    if not outcome.succeeded:
        error = outcome.record.get("error", {})
        err.print(f"[red]{outcome.status}[/] {error.get('type')}: {error.get('message')}")
    sys.exit(0 if outcome.succeeded else 1)


@cli.command()
@click.argument("experiment_id")
@runs_dir_option
@stack_option
def status(experiment_id: str, runs_dir: Path, stack: str | None) -> None:
    """Show one experiment's record."""
    record = _find_record(experiment_id, runs_dir, stack)
    if record is None:
        err.print(f"[red]error:[/] no experiment {experiment_id}")
        sys.exit(1)
    console.print(summary_table([record]))
    points = [_find_record(p["experiment_id"], runs_dir, stack) or p for p in record.get("points", [])]
    if points:
        console.print(summary_table(points, title=f"the {len(points)} points of sweep {experiment_id}"))
    if record.get("error"):
        console.print(f"error: {record['error'].get('type')}: {record['error'].get('message')}")
    if record.get("progress") and not Status(record["status"]).is_final:
        p = record["progress"]
        console.print(f"progress: {p['stage']} {p['frames_done']}/{p['frames_total']} frames")


@cli.command(name="list")
@click.option("--status", "status_", type=click.Choice([s.value for s in Status]), help="only this status")
@runs_dir_option
@stack_option
def list_(status_: str | None, runs_dir: Path, stack: str | None) -> None:
    """List experiments, newest first."""
    if stack:
        if not status_:
            raise click.UsageError("on AWS the listing goes through the status index: give --status")
        records, _ = _stack_services(stack).store.list_by_status(Status(status_))
    else:
        records = [r for r in _runs(runs_dir).records() if status_ in (None, r["status"])]
    console.print(summary_table(records))


@cli.command()
@click.argument("experiment_id")
@runs_dir_option
@stack_option
def cancel(experiment_id: str, runs_dir: Path, stack: str | None) -> None:
    """Stop a running experiment; Reconcile marks it ABORTED."""
    if stack:
        from codeclab.experiments import api

        try:
            _print_json(api.cancel(experiment_id, _stack_services(stack)))
        except api.ApiError as exc:
            err.print(f"[red]error:[/] {exc.message}")
            sys.exit(1)
        return
    runs = _runs(runs_dir)
    record = runs.record(experiment_id)
    if record is None:
        err.print(f"[red]error:[/] no experiment {experiment_id[:80]} in {runs_dir}")
        sys.exit(1)
    owner = runs.endpoint_of(experiment_id)
    if owner is None:  # recovery has made it final: nothing runs it any more
        err.print(f"[red]error:[/] {experiment_id} already ended as {record['status']}")
        sys.exit(1)
    status_code, body = _call(f"{owner.url}/experiments/{experiment_id}/cancel", "POST")
    _print_json(body)
    sys.exit(0 if status_code == 202 else 1)


@cli.command()
def codecs() -> None:
    """The codec registry, with each codec's parameters, ranges and defaults."""
    table = Table(title="codecs")
    for column in ("codec", "parameter", "type", "range / choices", "default"):
        table.add_column(column)
    for name in codec_names():
        properties = codec_param_schema(name)["properties"]
        if not properties:  # custom: its params go to the user's encode() as they are
            table.add_row(name, "(any)", "object", "passed to your encode(frames, params)", "")
        for index, (param, schema) in enumerate(properties.items()):
            table.add_row(
                name if index == 0 else "",
                param,
                str(schema.get("type", "")),
                _range(schema),
                str(schema.get("default", "")),
            )
    console.print(table)
    console.print("crf and qp exclude each other; keyint 1 makes every frame intra.")


@cli.command()
def doctor() -> None:
    """Which sandbox layers this host can apply; exit 1 if untrusted custom codecs cannot run here."""
    from codeclab.worker.sandbox.doctor import diagnose

    with console.status("building each sandbox layer in a probe child..."):
        diagnosis = diagnose()
    console.print(f"host: {diagnosis.host}")
    if diagnosis.error:
        err.print(f"[red]error:[/] the probe child did not run: {diagnosis.error}")
        sys.exit(1)
    table = Table(title="custom-codec sandbox")
    for column in ("layer", "needed for untrusted code", "here", "what was checked, or why not"):
        table.add_column(column, overflow="fold")
    for report in diagnosis.layers:
        mark = "[green]yes[/]" if report.applied else "[red]no[/]" if report.required else "[yellow]no[/]"
        table.add_row(report.layer.value, "required" if report.required else "extra depth", mark, report.detail)
    console.print(table)
    if diagnosis.untrusted_code_can_run:
        console.print("Untrusted custom codecs run here with every required layer.")
        return
    err.print(
        "Untrusted custom codecs fail here with SANDBOX_UNAVAILABLE. Run the worker where the missing layers exist "
        '(as root in the container image, on a kernel with Landlock), or mark code you trust "trusted": true.'
    )
    sys.exit(1)


@cli.command()
@click.option("--port", type=int, default=8080, show_default=True, help="port on 127.0.0.1")
@runs_dir_option
def serve(port: int, runs_dir: Path) -> None:
    """Serve the stack's HTTP API on 127.0.0.1 through the same API Lambda handler."""
    with _local_service(runs_dir, kind="serve", port=port) as service:
        console.print(
            f"codeclab API on {service.url}  (OpenAPI: {service.url}/openapi.json); Ctrl-C cancels what runs and "
            "stops, a second Ctrl-C stops at once"
        )
        try:
            service.serve_forever()
        except KeyboardInterrupt:
            _stop(service)


@cli.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--stack", required=True, help="the deployed stack's CloudFormation name, e.g. Codeclab")
@click.option("--idempotency-key", help="the same key never starts a second experiment")
def submit(spec: Path, stack: str, idempotency_key: str | None) -> None:
    """Start SPEC on AWS, through the deployed stack's state machine."""
    from codeclab.experiments import api

    _load_spec(spec)
    try:
        _print_json(api.submit(spec.read_text(), idempotency_key, _stack_services(stack)))
    except api.ApiError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        sys.exit(2)


@cli.command()
@click.option("--quality", type=click.IntRange(1, 4), required=True, help="the rate point to train (1 = fewest bits)")
@click.option("--steps", type=click.IntRange(min=1), default=4000, show_default=True, help="optimiser steps")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present, else CPU), cpu or cuda")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads for torch")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="where to write the weights [default: the built-in codec's qQ.safetensors]",
)  # fmt: skip
def train(quality: int, steps: int, device: str, threads: int, out: Path | None) -> None:
    """Train the built-in learned codec's weights for one quality, from scratch, with the pinned seed."""
    from codeclab.training.trainer import StepReport, TrainConfig
    from codeclab.training.trainer import train as run_training
    from codeclab.worker.codecs.learned.weights import weights_path

    config = TrainConfig(quality=quality, steps=steps, device=device, threads=threads)
    target = out or weights_path(quality)
    with progress_bar(console) as bar:
        task = bar.add_task(f"train q{quality}", total=steps)

        def show(report: StepReport) -> None:
            if report.step % 10 == 0 or report.step == steps:
                label = f"q{quality} bpp {report.bpp:.3f} PSNR {report.psnr:.2f}"
                bar.update(task, completed=report.step, description=label)

        run_training(config, target, show)
    console.print(f"wrote {target}")


@cli.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option(
    "--anchor",
    help="the reference curve: an experiment or sweep id, a codec name, or a curve label [default: the first ID's]",
)
@click.option(
    "--metric", type=click.Choice(["psnr_yuv", "ms_ssim", "vmaf"]), default="psnr_yuv", show_default=True,
    help="the quality axis and the BD-quality metric",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path),
    help="where to write the files [default: RUNS_DIR/reports/FIRST_ID]",
)  # fmt: skip
@runs_dir_option
@click.option("--allow-mismatch", is_flag=True, help="report even if the test conditions differ; stamps every output")
def report(
    ids: tuple[str, ...], anchor: str | None, metric: str, out: Path | None, runs_dir: Path, allow_mismatch: bool
) -> None:
    """Compare finished experiments: RD curves and Bjøntegaard deltas against an anchor curve.

    Each ID is an experiment or a sweep (its SUCCEEDED points; the others are listed as skipped).
    Points are grouped into curves by codec and settings other than the rate knob (crf, qp,
    quality). BD-rate is in percent at equal quality, negative = fewer bits than the anchor;
    BD-quality is in the metric's unit at equal rate, positive = better.

    Writes report.csv, bd.csv, report.json, rd.png and rd.html. Exit 0 when written; 2 when
    refused: an unknown id, an unclear anchor, or test conditions that differ (source, metric
    definitions, rate, ffmpeg, numpy; codec build within a curve) without --allow-mismatch.
    """
    from rich.markup import escape

    from codeclab.report.report import make_report
    from codeclab.report.runs import ReportError

    _runs(runs_dir)  # a sweep cut short by a lost process is made final before it is reported
    try:
        make_report(ids, runs_dir, metric, anchor, out or runs_dir / "reports" / ids[0], allow_mismatch, console)
    except ReportError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)


# -- helpers --------------------------------------------------------------------------------
@contextmanager
def _local_service(runs_dir: Path, kind: str, port: int = 0) -> Iterator[Any]:
    from codeclab.local.service import LocalService

    service = LocalService(runs_dir, port=port, kind=kind)
    with console.status("starting the local AWS emulator (synthesizing the stack if it changed)"):
        service.__enter__()
    try:
        _say_recovered(service.recovered, runs_dir)
        yield service
    finally:
        service.__exit__(None, None, None)
        for line in service.parked:
            err.print(
                f"[red]STORAGE:[/] runs/ could not take {line}; the next codeclab command on {runs_dir} moves it "
                "in once there is room"
            )


def _stop(service: Any) -> None:
    """After Ctrl-C or SIGTERM: cancel what runs and keep it in runs/; a second interrupt stops at once. Exits."""
    code = _interrupt_exit_code()
    err.print(
        f"[yellow]interrupted:[/] cancelling what runs, as `codeclab cancel` would, and keeping it in "
        f"{service.runs.root}/ (Ctrl-C again to stop at once)"
    )
    try:
        ended = service.stop_all()
    except KeyboardInterrupt:
        for signum in INTERRUPTED_EXIT:  # a third one must not cut the records short
            signal.signal(signum, signal.SIG_IGN)
        code = _interrupt_exit_code()
        ended = service.abort_now("the local codeclab process was interrupted twice and stopped at once")
    err.print(f"{len(ended)} experiment(s) ended ABORTED; their records are in {service.runs.root}/")
    sys.exit(code)


def _runs(runs_dir: Path) -> Any:
    """The runs folder, with what a dead `codeclab run` or `serve` left unfinished finalised first."""
    from codeclab.local.runs import RunsFolder

    runs = RunsFolder(runs_dir)
    _say_recovered(runs.recover(), runs_dir)
    return runs


def _say_recovered(ids: list[str], runs_dir: Path) -> None:
    if ids:
        err.print(
            f"[yellow]note:[/] {len(ids)} experiment(s) in {runs_dir} had lost the local process that ran them; "
            f"now ABORTED / ORCHESTRATOR_LOST: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
        )


def _check_local_clips(spec: SpecDocument, path: Path) -> None:
    """A local clip that is not there is refused now, not after the workflow started."""
    clip = str(spec["source"]["clip"])
    if not clip.startswith(("builtin:", "s3://")) and not Path(clip).expanduser().is_file():
        err.print(f"[red]error:[/] {path}: $.source.clip: no such file {clip[:200]!r} (relative to {Path.cwd()})")
        sys.exit(2)


def _range(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return ", ".join(map(str, schema["enum"]))
    if "minimum" in schema:
        return f"{schema['minimum']}..{schema.get('maximum', '')}"
    return ""


def _find_record(experiment_id: str, runs_dir: Path, stack: str | None) -> dict[str, Any] | None:
    if stack:
        return _stack_services(stack).store.find(experiment_id)
    record: dict[str, Any] | None = _runs(runs_dir).record(experiment_id)  # mirrored as it runs
    return record


def _stack_services(stack: str) -> Any:
    from codeclab.remote import StackNotFound, stack_services

    try:
        return stack_services(stack)
    except StackNotFound as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)


def _call(url: str, method: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    try:
        return call_api(url, method, body)
    except urllib.error.URLError as exc:
        err.print(f"[red]error:[/] the local codeclab process at {url} does not answer ({exc.reason})")
        sys.exit(2)


def _print_json(body: dict[str, Any]) -> None:
    console.print_json(json.dumps(body, default=str))


if __name__ == "__main__":
    main()

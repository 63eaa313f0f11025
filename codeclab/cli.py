"""`codeclab`: run experiments through the workflow, locally or on AWS, and read their records."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.markup import escape
from rich.table import Table

from codeclab.clients import open_client
from codeclab.clients.base import ExperimentsClient, Reason, RecordSummary, Refused, Submission
from codeclab.clients.local import LocalClient
from codeclab.experiments import Spec, SpecError, codec_names, codec_param_schema, load_spec_file
from codeclab.experiments.record import RecordError
from codeclab.experiments.result import Result
from codeclab.experiments.schema import SpecDocument
from codeclab.experiments.statuses import Status
from codeclab.fast_exit import skip_final_collections
from codeclab.local.runs import RunsFolder
from codeclab.terminal import progress_bar, show_record_progress, summary_table, wide_console

if TYPE_CHECKING:
    from codeclab.local.service import LocalService
    from codeclab.worker.packages.check import CheckedPackage

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
    skip_final_collections()
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


# Documented exit codes of a refusal: 2 when nothing could start (bad input, no backend to ask), else 1.
REFUSED_EXIT = {Reason.INVALID: 2, Reason.UNAVAILABLE: 2, Reason.NOT_FOUND: 1, Reason.ENDED: 1, Reason.NOT_KEPT: 1}


class _Commands(click.Group):
    """Every command ends a backend's refusal the same way: the message, who refused, the exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Refused as refused:
            err.print(f"[red]error:[/] {escape(refused.message)}")
            _say_answered_by(refused.answered_by)
            sys.exit(REFUSED_EXIT[refused.reason])


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Neural video codec experiments: one workflow, on AWS or on this machine."""


DEFAULT_RUNS_DIR = Path("runs")
POINTS_PAGE = 50  # a sweep's points per page of `status`: 10,000 of them would fill any terminal
runs_dir_option = click.option(
    "--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RUNS_DIR, show_default=True,
    help="the local system of record: one folder per experiment",
)  # fmt: skip
stack_option = click.option("--stack", help="a deployed codeclab stack (CloudFormation name): act on AWS, not locally")


def _load_spec(path: Path) -> Spec:
    try:
        return load_spec_file(path)
    except SpecError as exc:
        _refuse(str(exc))


@cli.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@runs_dir_option
@click.option("--no-wait", is_flag=True, help="submit to a running `codeclab serve` and return at once")
@click.option("--own-stack", is_flag=True,
              help="start a local stack of its own even when a `codeclab serve` runs on --runs-dir")  # fmt: skip
def run(spec: Path, runs_dir: Path, no_wait: bool, own_stack: bool) -> None:
    """Run SPEC through the local workflow.

    When a `codeclab serve` runs on --runs-dir, SPEC runs there, on its warm stack (seconds sooner);
    otherwise, or with --own-stack, this process starts a local stack of its own for it.

    Exit 0 when it SUCCEEDED, 1 otherwise, 2 for a bad spec; 130 (143) when Ctrl-C (SIGTERM) stopped it,
    after cancelling what ran and keeping it, ABORTED, in runs/. A second Ctrl-C stops at once.
    """
    parsed = _load_spec(spec)
    _check_local_clips(parsed, spec)
    if no_wait:
        _submit(_client(None, runs_dir), parsed)
        return
    if not own_stack and RunsFolder(runs_dir).endpoints(kind="serve"):
        client = LocalClient(runs_dir)
        _say_recovered(client.recovered, runs_dir)
        outcome = _run_on_serve(client, parsed)
        _show_outcome(outcome, RunsFolder(runs_dir).folder(outcome.experiment_id))
    with _local_service(runs_dir, kind="run", jobs=len(parsed.points) or 1) as service:
        outcome = _run_here(LocalClient(runs_dir, host=service), parsed, service)
    _show_outcome(outcome, service.runs.folder(outcome.experiment_id))


@cli.command()
@click.argument("experiment_id")
@runs_dir_option
@stack_option
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
              help=f"a sweep's points, {POINTS_PAGE} a page")  # fmt: skip
def status(experiment_id: str, runs_dir: Path, stack: str | None, page: int) -> None:
    """Show one experiment's record; for a sweep, its progress, its failed points and a page of its points."""
    record = _client(stack, runs_dir).get(experiment_id)
    console.print(summary_table([record.item]))
    if record.points:
        first = (page - 1) * POINTS_PAGE
        shown = record.points[first : first + POINTS_PAGE]
        title = f"points {first + 1}-{first + len(shown)} of {len(record.points)} of sweep {experiment_id}"
        console.print(summary_table(list(shown), title=title))
    if record.sweep:
        console.print(f"progress: {escape(record.sweep.line())}")
        for failed in record.sweep.failed:
            console.print(f"failed: {failed.experiment_id} {escape(failed.label)} {failed.error_type}")
    if record.error:
        console.print(f"error: {_describe(record.error)}")
    if record.progress and not record.status.is_final:
        p = record.progress
        console.print(f"progress: {p['stage']} {p['frames_done']}/{p['frames_total']} frames")
    _say_answered_by(record.answered_by)


@cli.command(name="list")
@click.option("--status", "status_", type=click.Choice([s.value for s in Status]), help="only this status")
@runs_dir_option
@stack_option
def list_(status_: str | None, runs_dir: Path, stack: str | None) -> None:
    """List experiments, newest first."""
    listing = _client(stack, runs_dir).list(Status(status_) if status_ else None)
    console.print(summary_table(list(listing.records)))
    _say_answered_by(listing.answered_by)


@cli.command()
@click.argument("experiment_id")
@runs_dir_option
@stack_option
def cancel(experiment_id: str, runs_dir: Path, stack: str | None) -> None:
    """Stop a running experiment; Reconcile marks it ABORTED."""
    cancellation = _client(stack, runs_dir).cancel(experiment_id)
    _print_json(cancellation.as_json())
    _say_answered_by(cancellation.answered_by)


@cli.command()
def codecs() -> None:
    """The codec registry, with each codec's parameters, ranges and defaults."""
    table = Table(title="codecs")
    for column in ("codec", "parameter", "type", "range / choices", "default"):
        table.add_column(column)
    for name in codec_names():
        properties = codec_param_schema(name)["properties"]
        if not properties:  # custom and package: the user's encode() or the package's codec.json decides
            table.add_row(name, "(any)", "object", codec_param_schema(name).get("description", ""), "")
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


@cli.group()
def codec() -> None:
    """Codec packages: check one, pack one (see docs/custom-codecs.md, "Codec packages")."""


@codec.command("pack")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(), show_default=True,
              help="where to write <name>-<version>.tar.gz")  # fmt: skip
def codec_pack(path: Path, out_dir: Path) -> None:
    """Check the package folder PATH and write its reproducible .tar.gz; print the archive's path and sha256.

    Exit 2 when the package is not valid (the message names the file or codec.json field).
    """
    from codeclab.worker.packages.manifest import PackageError
    from codeclab.worker.packages.pack import pack

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        archive, digest = pack(path, out_dir)
    except PackageError as exc:
        _refuse(str(exc))
    console.print(f"{digest}  {escape(str(archive))}")


@codec.command("export-learned")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a weights file `codeclab train --out` wrote [default: the shipped weights]")  # fmt: skip
@click.option("--name", default="learnedvideo", show_default=True, help="the package's name and module folder")
@click.option("--replace", is_flag=True, help="overwrite OUT if it exists")
def codec_export_learned(out: Path, weights: Path | None, name: str, replace: bool) -> None:
    """Write the built-in learned codec, with its weights, as a codec package folder OUT; its `quality` and
    `intra_period` params are the built-in codec's.

    The package runs the learned codec's own modules in the sandbox and writes the same bitstream, byte for
    byte; run it with "allow_imports": ["constriction", "scipy"] (see examples/learnedvideo.json).
    """
    from codeclab.worker.codecs.learned.export import EXTRA_IMPORTS, export_learned
    from codeclab.worker.codecs.learned.weights import builtin_weights
    from codeclab.worker.errors import InvalidInput

    try:
        exported = export_learned(weights or builtin_weights(), out, name, replace)
    except InvalidInput as exc:
        _refuse(str(exc))
    except OSError as exc:
        _refuse(f"cannot write {out}: {exc.strerror or str(exc)}", 1)
    console.print(f"wrote {escape(str(exported.root))}: {exported.name} {exported.version}")
    imports = ", ".join(f'"{module}"' for module in EXTRA_IMPORTS)
    uri = escape(str(exported.root))
    console.print(f'run it with "codec": {{"name": "package", "uri": "{uri}", "allow_imports": [{imports}]}}')


@codec.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--clip", default="builtin:carphone", show_default=True,
              help="the trial's clip: builtin:NAME or a file (.y4m, .mp4), as a spec's source.clip")  # fmt: skip
@click.option("--frames", type=click.IntRange(min=1), default=2, show_default=True,
              help="how many of the clip's first frames the trial codes")  # fmt: skip
@click.option("--params", "params_json", default="{}", metavar="JSON",
              help="the package's params, a JSON object checked by its schema [default: its defaults]")  # fmt: skip
@click.option("--limits", "limits_json", default="{}", metavar="JSON",
              help='each child\'s limits, as a spec\'s limits.codec: \'{"wall_seconds": 1200}\'')  # fmt: skip
@click.option("--trusted", is_flag=True,
              help='run with the layers this host has, as a spec\'s "trusted": true: code you wrote')  # fmt: skip
@click.option("--allow-import", "allow_imports", multiple=True, metavar="MODULE",
              help="a module the package may import beyond the default allow-list, as a spec's "
                   "codec.allow_imports (repeat it for each)")  # fmt: skip
def codec_check(
    path: Path,
    clip: str,
    frames: int,
    params_json: str,
    limits_json: str,
    trusted: bool,
    allow_imports: tuple[str, ...],
) -> None:
    """Check the package at PATH (a folder or .tar.gz), then run it: its files, codec.json, weights hashes and
    params schema; then the first FRAMES frames of CLIP encoded and decoded through the sandbox, as the worker
    runs them, and the RD point the worker would record.

    Exit 0 when it is valid and the trial ran; 2 when the package or an option is at fault (the message names
    the file, the codec.json field or the param; CODEC_ERROR with your traceback; SANDBOX_VIOLATION); 1 when
    this host cannot run the trial (SANDBOX_UNAVAILABLE: see `codeclab doctor`).
    """
    import tempfile

    from codeclab.worker.packages.check import Trial, check_package, trial_spec
    from codeclab.worker.packages.manifest import PackageError

    params, limits = _json_option("--params", params_json), _json_option("--limits", limits_json)
    with tempfile.TemporaryDirectory(prefix="codeclab-check-") as cache:
        try:
            checked = check_package(str(path), Path(cache))
            spec = trial_spec(str(path), Trial(clip, frames, params, trusted, limits, allow_imports))
        except (PackageError, SpecError) as exc:
            _refuse(str(exc))
        for line in checked.lines():
            console.print(escape(line))
        result = _codec_trial(checked, spec)
    console.print(escape(f"trial     {_trial_line(result)}"))
    for line in _sandbox_lines(result["conditions"]["codec"]["sandbox"]):
        console.print(line)
    console.print(_rd_point_table(result))


def _json_option(option: str, text: str) -> Any:
    """An option's JSON value; the spec check that follows says what shape it must have."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _refuse(f"{option}: not JSON ({exc}); give an object, e.g. '{{\"step\": 8}}'")


def _codec_trial(checked: CheckedPackage, spec: SpecDocument) -> Result:
    """Run the trial under a status line; end a failure as the worker would name it, never with our traceback."""
    from codeclab.worker.errors import CodecFailure, InvalidInput, SandboxUnavailable, SandboxViolation, WorkerError
    from codeclab.worker.packages.check import run_trial
    from codeclab.worker.progress import Progress, ProgressEvent

    with console.status("starting the sandboxed encoder...") as status:

        def show(event: ProgressEvent) -> None:
            status.update(f"{event.stage}: {event.frames_done}/{event.frames_total} frames (in the sandbox)")

        try:
            return run_trial(checked, spec, Progress(spec["source"].get("frames", 0), [show]))
        except WorkerError as exc:
            failure = exc
        except Exception as exc:  # a bug of ours: say so in one line, as the worker records INTERNAL
            failure = WorkerError(f"{type(exc).__name__}: {exc} (a fault in codeclab, not in the package)")
    err.print(f"[red]{failure.error_type}:[/] {escape(str(failure))}")
    if isinstance(failure, SandboxUnavailable) and not spec["codec"]["trusted"]:
        err.print("For code you trust: `codeclab codec check --trusted` runs it with the layers this host has.")
    limit = re.search(r"limits\.codec\.(\w+)", str(failure))
    if limit:
        err.print(f"For the trial, --limits sets limits.codec: --limits '{{\"{limit[1]}\": N}}'.")
    sys.exit(2 if isinstance(failure, InvalidInput | CodecFailure | SandboxViolation) else 1)


def _trial_line(result: Result) -> str:
    source = result["conditions"]["source"]
    width, height = source["size"]
    fps = float(Fraction(source["fps"]))
    params = json.dumps(result["spec"]["codec"]["params"], sort_keys=True)
    return (f"{result['frames']} frames of {source['clip']} ({width}x{height} {source['pix_fmt']}, {fps:.4g} fps), "
            f"params {params}: encoded and decoded through the sandbox")  # fmt: skip


def _sandbox_lines(sandbox: Mapping[str, Any]) -> list[str]:
    """Which layers held in each child: every required one, verified in /proc, or (trusted) none required."""
    if sandbox["trusted"]:
        lines = [
            "sandbox   [yellow]trusted: not every layer was required[/]; the code ran with the layers this host has"
        ]
    else:
        lines = [f"sandbox   [green]every required layer applied and verified[/] in the encoder and the decoder: "
                 f"{escape(', '.join(sandbox['required']))}"]  # fmt: skip
    for child in ("encoder", "decoder"):
        missing = sandbox[child]["missing"]
        if missing or sandbox["trusted"]:
            gaps = "; ".join(f"{layer} ({why})" for layer, why in sorted(missing.items())) or "none"
            lines.append(f"          {child}: not applied: {escape(gaps)}")
    return lines


def _rd_point_table(result: Result) -> Table:
    """The RD point as the worker measured it: rate from the bitstream's bytes, quality from the decoded frames."""
    m, timings = result["metrics"], result["timings"]
    table = Table(title="RD point", caption="encode and decode times include starting each sandboxed child")
    cells = {
        "bytes": str(result["bitstream"]["bytes"]),
        "bpp": f"{m['bpp']:.4f}",
        "kbps": f"{m['kbps']:.1f}",
        "PSNR-Y": f"{m['psnr_y']:.2f}",
        "PSNR-YUV": f"{m['psnr_yuv']:.2f}",
        "SSIM": f"{m['ssim']:.4f}",
        "encode s": f"{timings['encode_s']:.2f}",
        "decode s": f"{timings['decode_s']:.2f}",
        "device": str(result["conditions"]["codec"]["device"]),
    }
    for column in cells:
        table.add_column(column, justify="left" if column == "device" else "right", no_wrap=True)
    table.add_row(*cells.values())
    return table


@cli.command()
def doctor() -> None:
    """Which sandbox layers this host can apply; exit 1 if untrusted custom codecs cannot run here."""
    from codeclab.worker.sandbox.doctor import diagnose

    with console.status("building each sandbox layer in a probe child..."):
        diagnosis = diagnose()
    console.print(f"host: {diagnosis.host}")
    if diagnosis.error:
        _refuse(f"the probe child did not run: {diagnosis.error}", 1)
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
    _submit(_client(stack), _load_spec(spec), idempotency_key)


@cli.command()
@click.option("--steps", type=click.IntRange(min=1), default=6000, show_default=True, help="optimiser steps in all")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present, else CPU), cpu or cuda")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads for torch")
@click.option("--seed", type=int, default=20261130, show_default=True, help="seeds the data sampler and torch")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="crops per network per step")
@click.option(
    "--max-frames", type=click.IntRange(min=2), help="use each training source's first N frames only (a quick trial)"
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="where to write the weights (a new file); give it to a spec as codec.params.weights")  # fmt: skip
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="where to keep the training state; an existing one is resumed  [default: OUT.ckpt]")  # fmt: skip
@click.option("--replace-builtin", is_flag=True,
              help="write the shipped video.safetensors in the source tree instead (maintainers only)")  # fmt: skip
def train(
    steps: int,
    device: str,
    threads: int,
    seed: int,
    batch: int,
    max_frames: int | None,
    out: Path | None,
    checkpoint: Path | None,
    replace_builtin: bool,
) -> None:
    """Train the built-in learned codec's weights: both networks, every quality level, from the pinned seed.

    It saves a checkpoint every 100 steps and on Ctrl-C; the same command resumes from it, and ends with the
    same weights as an unbroken run (same seed, steps and threads). It writes --out FILE, never the shipped
    weights unless --replace-builtin says so. Use the file with
    "codec": {"name": "learned", "params": {"quality": Q, "weights": {"uri": FILE, "sha256": ...}}}, or
    package it with `codeclab codec export-learned --weights FILE`.
    """
    from codeclab.training.trainer import CheckpointMismatch, StepReport, TrainConfig
    from codeclab.training.trainer import train as run_training
    from codeclab.worker.codecs.learned.weights import BUILTIN

    if (out is None) == (not replace_builtin):
        _refuse("give --out FILE (your weights), or --replace-builtin (the shipped ones), not both")
    target = out or BUILTIN
    if out is not None and out.exists():
        _refuse(f"--out {out} exists; training never overwrites a weights file")
    state = checkpoint or (target.with_name(target.name + ".ckpt") if out else Path(BUILTIN.name + ".ckpt"))
    config = TrainConfig(steps=steps, batch=batch, device=device, threads=threads, seed=seed, max_frames=max_frames)
    interrupted = threading.Event()
    with _interrupt_sets(interrupted), progress_bar(console) as bar:
        console.print(f"loading the training data; the checkpoint is {escape(str(state))}")
        task = bar.add_task("train (loading the data)", total=steps)

        def show(report: StepReport) -> None:
            if report.step % 10 == 0 or report.step == steps:
                label = (
                    f"I {report.intra_bpp:.3f} bpp {report.intra_psnr:.2f} dB, "
                    f"P {report.inter_bpp:.3f} bpp {report.inter_psnr:.2f} dB"
                )
                bar.update(task, completed=report.step, description=label)

        try:
            written = run_training(config, target, state, show, interrupted.is_set)
        except CheckpointMismatch as exc:
            _refuse(f"--checkpoint: {exc}")
    if written is None:
        console.print(f"stopped; the state is in {escape(str(state))}: run the same command again to resume")
        raise SystemExit(130)
    from codeclab.worker.hashing import sha256_file

    weights = json.dumps({"uri": str(target), "sha256": sha256_file(target)})
    console.print(
        f"wrote {escape(str(target))}; use it as", escape(f'"params": {{"quality": Q, "weights": {weights}}}')
    )


@contextmanager
def _interrupt_sets(event: threading.Event) -> Iterator[None]:
    """The first SIGINT or SIGTERM sets `event` (the trainer saves at the next step boundary and stops); a second
    one raises KeyboardInterrupt at once, leaving the last checkpoint as it was."""

    def interrupted(*_: object) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        console.print("stopping after this step (or once the data has loaded); Ctrl-C again to stop now")

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cli.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option(
    "--anchor",
    help="the reference curve: an experiment or sweep id, a codec name, or a curve label [default: the first ID's]",
)
@click.option(
    "--metric", type=click.Choice(["psnr_y", "psnr_yuv", "ms_ssim", "ssim", "vmaf"]), default="psnr_yuv",
    show_default=True, help="the plots' quality axis and the terminal's BD-quality (files hold every metric's)",
)  # fmt: skip
@click.option("--log-rate", is_flag=True, help="plot bpp on a logarithmic axis")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path),
    help="where to write the files [default: RUNS_DIR/reports/FIRST_ID]",
)  # fmt: skip
@runs_dir_option
@click.option("--allow-mismatch", is_flag=True, help="report even if the test conditions differ; stamps every output")
def report(
    ids: tuple[str, ...],
    anchor: str | None,
    metric: str,
    log_rate: bool,
    out: Path | None,
    runs_dir: Path,
    allow_mismatch: bool,
) -> None:
    """Compare finished experiments, on one clip or a test set: RD curves and Bjøntegaard deltas.

    Each ID is an experiment or a sweep (its SUCCEEDED points; the others are listed as skipped).
    Points are grouped per sequence, and into curves by codec and settings other than the rate
    knob (crf, qp, quality). Each curve is compared with the anchor curve on every sequence, in
    every metric the points measured, then averaged over the sequences (and per class) whose
    figure is not n/a. BD-rate is in percent at equal quality, negative = fewer bits than the
    anchor; BD-quality is in the metric's unit at equal rate, positive = better. A point
    measured twice with the same numbers is kept once.

    Writes report.csv, bd.csv, report.json, rd.png and rd.html. Exit 0 when written; 2 when
    refused: an unknown id, an unclear anchor, a point measured twice with different numbers,
    or test conditions that differ (metric definitions, rate, ffmpeg, numpy; the source within
    a sequence; the codec build within a curve) without --allow-mismatch.
    """
    from codeclab.report.report import make_report
    from codeclab.report.runs import ReportError

    # a sweep cut short by a lost process is made final before it is reported
    _say_recovered(RunsFolder(runs_dir).recover(), runs_dir)
    target = out or runs_dir / "reports" / ids[0]
    try:
        make_report(ids, runs_dir, metric, anchor, target, allow_mismatch, console, log_rate)
    except ReportError as exc:
        _refuse(str(exc))


# -- helpers --------------------------------------------------------------------------------
def _client(stack: str | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> ExperimentsClient:
    """The one backend this command asks: the deployed stack for --stack, else local mode on --runs-dir."""
    client = open_client(runs_dir, stack)
    _say_recovered(client.recovered, runs_dir)
    return client


def _submit(client: ExperimentsClient, spec: Spec, idempotency_key: str | None = None) -> None:
    submission = client.submit(spec, idempotency_key)
    _print_json(submission.as_json())
    _say_answered_by(submission.answered_by)


def _run_here(client: LocalClient, spec: Spec, service: LocalService) -> RecordSummary:
    """Submit to this process's workflow and follow it with a progress bar until it is final and in runs/."""
    submission = _announce(client.submit(spec))
    try:
        return _follow(client, submission)
    except KeyboardInterrupt:
        _stop(service)


def _announce(submission: Submission) -> Submission:
    console.print(f"{submission.experiment_id}  {submission.execution_arn}")
    _say_answered_by(submission.answered_by)
    return submission


def _follow(client: LocalClient, submission: Submission) -> RecordSummary:
    with progress_bar(console) as bar:
        task = bar.add_task("queued", total=None)
        return client.wait(submission, lambda r: show_record_progress(bar, task, r, r["status"].lower()))


def _run_on_serve(client: LocalClient, spec: Spec) -> RecordSummary:
    """Submit to the `codeclab serve` on the folder and follow runs/ until it is final. Ctrl-C or SIGTERM cancels
    it as `codeclab cancel` would and waits for it to be final (a second one stops waiting; serve still ends it)."""
    submission = _announce(client.submit(spec))
    try:
        return _follow(client, submission)
    except KeyboardInterrupt:
        code = _interrupt_exit_code()
        err.print(f"[yellow]interrupted:[/] cancelling {submission.experiment_id}, as `codeclab cancel` would")
        try:
            client.cancel(submission.experiment_id)
            final = client.wait(submission)
            err.print(f"{submission.experiment_id} ended {final.status}; its record is in {client.runs_root}/")
        except Refused as exc:  # it ended meanwhile, or its serve is gone (the next command finalises it)
            err.print(f"{submission.experiment_id}: {escape(exc.message)}")
        except KeyboardInterrupt:
            err.print(f"stopped waiting; the serve on {client.runs_root} ends {submission.experiment_id}")
        sys.exit(code)


def _refuse(message: str, code: int = 2) -> NoReturn:
    """The one way a command stops on a fault: the message (never read as markup), then exit 2, or `code`."""
    err.print(f"[red]error:[/] {escape(message)}")
    sys.exit(code)


def _show_outcome(outcome: RecordSummary, folder: Path) -> NoReturn:
    """The finished run's table, where it is kept, and its exit code: 0 when it SUCCEEDED, else 1."""
    succeeded = outcome.status is Status.SUCCEEDED
    if outcome.points:
        console.print(summary_table(list(outcome.points), title=f"sweep {outcome.experiment_id}: {outcome.status}"))
        console.print(f"report: codeclab report {outcome.experiment_id}")
    else:
        console.print(summary_table([outcome.item]))
    console.print(f"record and artifacts: {folder}")
    if not succeeded:
        err.print(f"[red]{outcome.status}[/] {_describe(outcome.error)}")
    sys.exit(0 if succeeded else 1)


def _describe(error: RecordError | None) -> str:
    return f"{error['type']}: {error['message']}" if error else "(no error recorded)"


def _say_answered_by(backend: str) -> None:
    err.print(f"[dim]answered by: {escape(backend)}[/]")


@contextmanager
def _local_service(runs_dir: Path, kind: str, port: int = 0, jobs: int | None = None) -> Iterator[LocalService]:
    from codeclab.local.faults import FaultPlanError
    from codeclab.local.service import LocalService
    from codeclab.local.template import CdkAppNotFound

    service = LocalService(runs_dir, port=port, kind=kind, jobs=jobs)
    try:
        with console.status("starting the local AWS emulator (synthesizing the stack if it changed)"):
            service.__enter__()
    except (CdkAppNotFound, FaultPlanError) as exc:  # local mode cannot start here, as asked
        _refuse(str(exc))
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


def _stop(service: LocalService) -> NoReturn:
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


def _say_recovered(ids: Sequence[str], runs_dir: Path) -> None:
    if ids:
        err.print(
            f"[yellow]note:[/] {len(ids)} experiment(s) in {runs_dir} had lost the local process that ran them; "
            f"now ABORTED / ORCHESTRATOR_LOST: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
        )


def _check_local_clips(parsed: Spec, path: Path) -> None:
    """A local clip that is not there is refused now, not after the workflow started (every clip of a test set)."""
    sources = [p.spec["source"] for p in parsed.points] or [parsed.document["source"]]
    clips = dict.fromkeys(s["clip"] for s in sources)
    missing = [c for c in clips if not c.startswith(("builtin:", "s3://")) and not Path(c).expanduser().is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        listed = ", ".join(repr(c[:200]) for c in missing[:5]) + more
        _refuse(f"{path}: $.source: no such file {listed} (relative to {Path.cwd()})")


def _range(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return ", ".join(map(str, schema["enum"]))
    if "minimum" in schema:
        return f"{schema['minimum']}..{schema.get('maximum', '')}"
    if schema.get("type") == "object" and "properties" in schema:
        return "{" + ", ".join(schema["properties"]) + "}"  # e.g. learned's weights: {uri, sha256}
    return ""


def _print_json(body: Mapping[str, object]) -> None:
    console.print_json(data=body)


if __name__ == "__main__":
    main()

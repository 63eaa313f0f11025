"""`python -m codeclab.worker SPEC --out DEST`: the Batch job's entrypoint and the local worker.

Exit codes: 0 ok, 2 invalid input, 3 stalled, 4 codec failure, 5 internal error, 6 sandbox violation,
7 sandbox unavailable on this host.
Every outcome, failures included, leaves result.json and worker.log at DEST.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from codeclab import atomic
from codeclab.experiments import SpecError, load_spec_file, read_spec
from codeclab.experiments.progress import RecordProgress
from codeclab.experiments.result import RESULT_SCHEMA_VERSION, AnyResult, FailedResult, Result, summary_line
from codeclab.experiments.schema import SpecDocument, shortened
from codeclab.worker.artifacts import ArtifactStore, open_store
from codeclab.worker.errors import InvalidInput, InvalidSpec, Stalled, StorageFailure, WorkerError
from codeclab.worker.faults import fault_from_env
from codeclab.worker.processes import PARENT_PID_ENV, die_with_parent
from codeclab.worker.progress import Progress, ProgressEvent, ProgressSink, StallWatchdog
from codeclab.worker.run import (
    RECON_Y4M,
    REFERENCE_Y4M,
    RunOptions,
    drop_unkept_artifacts,
    environment,
    run_experiment,
)
from codeclab.worker.sources import read_s3_text

log = logging.getLogger("codeclab.worker")
ARTIFACT_ORDER = (REFERENCE_Y4M, RECON_Y4M, "metrics.csv", "worker.log", "result.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m codeclab.worker",
        description="Encode a clip to a real bitstream, decode it, and measure it against the reference.",
        epilog="Exit codes: 0 ok, 2 invalid input, 3 stalled, 4 codec failure, 5 internal error, "
        "6 sandbox violation, 7 sandbox unavailable on this host.",
    )
    parser.add_argument("spec", help="experiment spec: a JSON file path, an s3:// URI, or - for stdin")
    parser.add_argument("--out", required=True, help="output folder or s3://bucket/prefix")
    parser.add_argument("--no-vmaf", dest="vmaf", action="store_const", const=False, help="skip VMAF")
    parser.add_argument(
        "--vmaf",
        dest="vmaf",
        action="store_const",
        const=True,
        help="measure VMAF even on long clips",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="do not keep reference.y4m, whatever the spec's artifacts.reference"
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.raiseExceptions = False  # a log line that cannot be written (a full disk) must not print a traceback
    # Batch stops a job with SIGTERM before SIGKILL: unwind, so temporary folders and children go with it
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parent = os.environ.get(PARENT_PID_ENV)
    if parent:  # a local job: die with the `codeclab run` or `serve` that started it, even on its SIGKILL
        try:
            die_with_parent(int(parent))
        except RuntimeError as exc:
            print(f"codeclab.worker: error: {exc}; nothing would collect this job, so it does not start",
                  file=sys.stderr)  # fmt: skip
            return WorkerError.exit_code
    try:
        store = open_store(args.out)
    except Exception as exc:  # an unusable destination has nowhere to write a result
        print(f"codeclab.worker: error: cannot open output {args.out}: {exc}", file=sys.stderr)
        return StorageFailure.exit_code if atomic.is_storage_error(exc) else InvalidInput.exit_code
    handlers = _log_to(store.staging / "worker.log", args.quiet)
    try:
        return _run(args, store)
    finally:
        for handler in handlers:
            logging.getLogger("codeclab").removeHandler(handler)
            handler.close()
        store.close()


def _run(args: argparse.Namespace, store: ArtifactStore) -> int:
    started = time.monotonic()
    spec: SpecDocument | None = None
    try:
        spec = _read_spec(args.spec)
        result = _execute(spec, args, store, started)
        result["timings"]["total_s"] = round(time.monotonic() - started, 4)
        _publish(store, result)
    except WorkerError as exc:
        return _finish_failed(store, spec, exc, started)
    except OSError as exc:
        if not atomic.is_storage_error(exc):
            return _internal(store, spec, exc, started)
        return _finish_failed(store, spec, StorageFailure(_refused_write(exc)), started)
    except Exception as exc:
        return _internal(store, spec, exc, started)
    log.info("done: %s -> %s", summary_line(result), store.uri("result.json"))
    return 0


def _internal(store: ArtifactStore, spec: SpecDocument | None, exc: Exception, started: float) -> int:
    log.debug("internal error:\n%s", traceback.format_exc())  # worker.log only
    return _finish_failed(store, spec, WorkerError(f"{type(exc).__name__}: {exc} (see worker.log)"), started)


def _refused_write(exc: OSError) -> str:
    where = exc.filename or "an output file"
    return f"could not write {where}: {exc.strerror}; free some space (or raise ulimit -f) and run it again"


def _execute(spec: SpecDocument, args: argparse.Namespace, store: ArtifactStore, started: float) -> Result:
    record = RecordProgress.from_environment()
    progress = Progress(spec["source"].get("frames", 0), _sinks(record), fault_from_env())

    options = RunOptions(vmaf=args.vmaf, keep_reference=False if args.no_reference else None)

    def on_hard_stall(error: Stalled) -> None:
        drop_unkept_artifacts(spec, store.staging, options)  # the stuck run never reaches its own cleanup
        _finish_failed(store, spec, error, started)

    with StallWatchdog(progress, spec["limits"]["stall_seconds"], on_hard_stall) as watchdog:
        try:
            return run_experiment(spec, store.staging, progress, options)
        except Exception:
            # a stall kills ffmpeg, which may surface first as a codec error
            if watchdog.error is not None:
                raise watchdog.error from None
            raise
        finally:
            if record is not None:  # its last write lands before the result does
                record.close()


def _read_spec(source: str) -> SpecDocument:
    """The one point this job runs, checked once; a sweep is the workflow's to expand, not the worker's."""
    try:
        if source == "-":
            spec = read_spec(sys.stdin.buffer.read(), "spec (stdin)")
        elif source.startswith("s3://"):
            spec = read_spec(read_s3_text(source, "spec"), source)
        else:
            spec = load_spec_file(Path(source))
    except SpecError as exc:
        raise InvalidSpec(str(exc)) from None
    if spec.is_sweep:
        raise InvalidSpec("$.sweep: the worker runs one point; run sweeps through the workflow (codeclab run)")
    return spec.document


def _publish(store: ArtifactStore, result: AnyResult) -> None:
    names = sorted(p.name for p in store.staging.iterdir() if p.is_file() and p.name not in ARTIFACT_ORDER)
    names += [n for n in ARTIFACT_ORDER if (store.staging / n).exists() or n == "result.json"]
    result["artifacts"] = {name: store.uri(name) for name in names}
    atomic.write_json(store.staging / "result.json", result)  # whole or absent: its presence means complete
    for name in names:
        store.publish(name)


def _finish_failed(store: ArtifactStore, spec: SpecDocument | None, error: WorkerError, started: float) -> int:
    log.error("%s: %s", error.error_type, shortened(str(error), limit=2000))
    result: FailedResult = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "status": "FAILED",
        "name": spec.get("name") if spec else None,
        "spec": spec,
        "error": {"type": error.error_type, "message": str(error), "exit_code": error.exit_code},
        "timings": {"total_s": round(time.monotonic() - started, 4)},
        "environment": environment(),
    }
    try:
        _publish(store, result)
    except OSError as exc:  # nowhere to put even the failure: say so in one line, leave no half result.json
        print(f"codeclab.worker: ERROR: cannot write result.json ({exc.strerror}) after: {error.error_type}",
              file=sys.stderr)  # fmt: skip
    return error.exit_code


class _LogSink:
    """Logs progress at most once a second per stage, and each stage's end."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        finished = event.frames_total and event.frames_done >= event.frames_total
        if finished or now - self._last >= 1.0:
            self._last = now
            log.info("progress: %s %d/%d frames", event.stage, event.frames_done, event.frames_total)


def _sinks(record: RecordProgress | None) -> list[ProgressSink]:
    sinks: list[ProgressSink] = [_LogSink()]
    if record is not None:
        sinks.append(lambda event: record.report(event.stage, event.frames_done, event.frames_total))
    return sinks


def _log_to(path: Path, quiet: bool) -> list[logging.Handler]:
    """Log everything to worker.log and INFO up to stderr; logging flushes after each record."""
    logger = logging.getLogger("codeclab")
    logger.setLevel(logging.DEBUG)
    file_handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("codeclab.worker: %(levelname)s: %(message)s"))
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    for handler in (file_handler, console):
        logger.addHandler(handler)
    return [file_handler, console]

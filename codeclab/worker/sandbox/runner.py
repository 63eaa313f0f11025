"""The worker's side: run one codec child in the sandbox, check it from outside, take its output.

The child gets its input on stdin and answers on a pipe (see protocol). Its stdout and stderr
go to a third pipe whose tail the worker keeps for error messages. The worker reads no file
the child could have touched, and everything the child says is size-capped before it is read.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from codeclab.experiments.limits import CODEC_CAPS
from codeclab.experiments.schema import CodecParams
from codeclab.worker.errors import CodecFailure, SandboxUnavailable, SandboxViolation, WorkerError
from codeclab.worker.processes import keep_child_peak, kill_process_group, live_peak_rss_kib
from codeclab.worker.sandbox import identity, readable
from codeclab.worker.sandbox.landlock import Rule
from codeclab.worker.sandbox.layers import SCRATCH_ROOT_ENV, Applied, SandboxLimits, SandboxPolicy
from codeclab.worker.sandbox.protocol import (
    FRAME_HEADER,
    GO,
    MAX_JSON_FRAME,
    PROGRESS_BODY,
    ChildRequest,
    ErrorKind,
    Kind,
    PackageRequest,
    PublicHeader,
)
from codeclab.worker.sandbox.verify import verify

# Only these reach the child; nothing with AWS_, no tokens, no HOME of the worker.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")
LOG_TAIL_BYTES = 64 << 10
# How often the child's memory high-water mark is read between its frames.
PEAK_SAMPLE_SECONDS = 0.25
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class ChildJob:
    """One run of the user's encode() or decode()."""

    role: str  # "encode" or "decode"
    code: str
    header: PublicHeader
    payload: bytes | bytearray  # the clip (encode) or the bitstream (decode), as the child reads it
    max_output_bytes: int
    params: CodecParams = field(default_factory=dict)
    allowed_imports: Sequence[str] = ()
    preload: Sequence[str] = ("numpy",)
    hidden: Sequence[Path] = ()  # copies of the source the child must not be able to read
    readable: Sequence[Path] = ()  # folders beyond the interpreter and allowed packages (a codec package's own)
    package: PackageRequest | None = None  # a codec package to run instead of `code`


@dataclass(frozen=True)
class ChildResult:
    output: bytearray  # read from the pipe into one buffer: decoded frames can be a gigabyte
    applied: Applied


ProgressCallback = Callable[[int], None]


def run_child(
    job: ChildJob, limits: SandboxLimits, policy: SandboxPolicy, on_progress: ProgressCallback | None = None
) -> ChildResult:
    """Run the job in a fresh child under `policy`; raise a WorkerError for anything but clean output.

    `on_progress` gets each frames-done count the child reports (validated), on the calling thread."""
    rules = readable.rules(job.allowed_imports, job.readable)
    who = f"{'codec package' if job.package else 'custom codec'} {job.role}r"
    with _scratch_folder() as folder:
        uid = identity.fresh_uid()
        file_uid = uid if _python_readable_by_others(tuple(rules)) else 0
        if os.geteuid() == 0:
            os.chown(folder, file_uid, file_uid)  # for a host tmpfs; a private tmpfs is mounted with this owner
        request = ChildRequest(
            role=job.role, code=job.code, params=job.params, header=job.header, payload_bytes=len(job.payload),
            allowed_imports=sorted(job.allowed_imports), preload=list(job.preload),
            required=sorted(policy.required), optional=sorted(policy.optional), seccomp=sorted(policy.seccomp),
            uid=uid, file_uid=file_uid, cpu_seconds=limits.cpu_seconds, file_bytes=limits.file_bytes,
            address_space_bytes=limits.address_space_bytes, scratch=str(folder), scratch_bytes=limits.scratch_bytes,
            max_threads=limits.max_threads, readable=[(str(r.path), r.access.value) for r in rules],
            hidden=[str(p) for p in job.hidden], result_fd=-1, package=job.package,
        )  # fmt: skip
        return _Supervision(who, request, job, limits, policy, on_progress or (lambda _: None)).run()


def _same_codeclab() -> dict[str, str]:
    """The child runs the sandbox code this worker runs: a source checkout's, not another the interpreter finds."""
    import codeclab

    source = Path(codeclab.__file__).resolve().parents[1]
    return {} if source.name in readable.SITE_FOLDERS else {"PYTHONPATH": str(source)}


@functools.cache
def _python_readable_by_others(rules: tuple[Rule, ...]) -> bool:
    """Full uid drop where a stranger could load this Python; else keep file-system uid 0 (see identity)."""
    return identity.readable_by_others([Path(sys.executable).resolve(), *(rule.path for rule in rules)])


@contextmanager
def _scratch_folder() -> Iterator[Path]:
    # the Batch job's tmpfs; elsewhere (local mode runs the same job definition) the temp folder, which the
    # child covers with a private tmpfs. The scratch layer checks the file system either way.
    root = os.environ.get(SCRATCH_ROOT_ENV)
    root = root if root and Path(root).is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="codeclab-sandbox-", dir=root))  # mode 0700
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Supervision:
    """One child's life: start, feed, check, release, collect."""

    def __init__(
        self,
        who: str,
        request: ChildRequest,
        job: ChildJob,
        limits: SandboxLimits,
        policy: SandboxPolicy,
        on_progress: ProgressCallback,
    ) -> None:
        self.who, self.job, self.limits, self.policy, self.on_progress = who, job, limits, policy, on_progress
        self.deadline = time.monotonic() + limits.wall_seconds
        read_end, self.write_end = os.pipe()
        self.request = replace(request, result_fd=self.write_end)
        self.frames = _FrameReader(read_end, job.max_output_bytes, job.header.frames)
        self.log = _LogTail()

    def run(self) -> ChildResult:
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env.update({"HOME": self.request.scratch, "TMPDIR": self.request.scratch, "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONHASHSEED": "0", **_same_codeclab()})  # fmt: skip
        command = [sys.executable, "-m", "codeclab.worker.sandbox.child"]
        try:
            proc = subprocess.Popen(command, env=env, cwd=self.request.scratch, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(self.write_end,),
                                    start_new_session=True)  # fmt: skip
        except OSError:
            os.close(self.frames.fd)
            raise
        finally:
            os.close(self.write_end)
        threads = [self.frames.start(proc.pid), self.log.start(proc.stdout)]
        try:
            return self._supervise(proc)
        finally:
            if proc.poll() is None:
                kill_process_group(proc)
            for thread in threads:
                thread.join()
            keep_child_peak(self.frames.peak_kib)

    def _supervise(self, proc: subprocess.Popen[bytes]) -> ChildResult:
        assert proc.stdin is not None
        _write_quietly(proc.stdin, self.request.to_line())
        _write_quietly(proc.stdin, self.job.payload)
        first = self.frames.first(self._remaining())
        if first is None:
            self._end(proc)
            if self.frames.violation:
                raise SandboxViolation(f"{self.who} {self.frames.violation}")
            raise self._no_answer(proc, "before it was ready")
        kind, body = first
        if kind is not Kind.READY:
            self._end(proc)
            raise self._setup_failure(body) if kind is Kind.ERROR else WorkerError(f"{self.who} answered before READY")
        applied = verify(proc.pid, self.request, _json(body), self.policy.trusted)
        unverified = self.policy.required - {*applied.layers}
        if unverified:
            self._end(proc)
            raise SandboxUnavailable(
                f"the sandbox for the {self.who} is missing required layers on this host: "
                + "; ".join(f"{layer}: {applied.missing.get(layer, 'not applied')}" for layer in sorted(unverified))
                + '. Run it where they exist, or mark the codec "trusted": true if you trust its code'
            )
        _write_quietly(proc.stdin, GO, close=True)
        return ChildResult(self._collect(proc), applied)

    def _collect(self, proc: subprocess.Popen[bytes]) -> bytearray:
        try:
            self._follow_progress()
            returncode = proc.wait(timeout=self._remaining())
        except (queue.Empty, subprocess.TimeoutExpired):
            kill_process_group(proc)
            raise SandboxViolation(
                f"{self.who} ran past its wall-clock limit of {self.limits.wall_seconds:g} s; "
                f"{limit_hint('wall_seconds')}"
            ) from None
        self.frames.join()
        if self.frames.violation:
            raise SandboxViolation(f"{self.who} {self.frames.violation}")
        if returncode < 0:
            raise _signal_failure(self.who, -returncode, self.limits)
        answers = self.frames.after_first()
        if not answers:
            raise self._no_answer(proc, "with no output")
        kind, body = answers[0]
        if kind is Kind.OUTPUT:
            return body
        if kind is Kind.ERROR:
            raise self._user_failure(body)
        raise SandboxViolation(f"{self.who} sent a second READY: its code wrote to the sandbox's result channel")

    def _follow_progress(self) -> None:
        """Pass on each PROGRESS until the child's pipe ends, reading its memory's high-water mark meanwhile.

        Raises queue.Empty at the wall-clock limit."""
        while True:
            try:
                done = self.frames.progress.get(timeout=min(self._remaining(), PEAK_SAMPLE_SECONDS))
            except queue.Empty:
                if self._remaining() <= 0:
                    raise
                self.frames.sample_peak()
                continue
            if done is None:
                return
            self.on_progress(done)  # here, not on the reader's thread: the watchdog's signal lands here too

    def _end(self, proc: subprocess.Popen[bytes]) -> None:
        kill_process_group(proc)
        self.frames.join()

    def _remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def _setup_failure(self, body: bytearray) -> WorkerError:
        message = _json(body)
        text = _clean(str(message.get("message", "")))
        if message.get("kind") == ErrorKind.UNAVAILABLE.value:
            return SandboxUnavailable(
                f"the sandbox for the {self.who} cannot be built: {text}. `codeclab doctor` shows what this host "
                'supports; code you trust may be marked "trusted": true'
            )
        return WorkerError(f"the sandbox for the {self.who} could not be set up: {text}")

    def _user_failure(self, body: bytearray) -> WorkerError:
        message = _json(body)
        text = _clean(str(message.get("message", "")))
        if message.get("kind") == ErrorKind.POLICY.value:
            return SandboxViolation(f"{self.who}: {text}")
        return CodecFailure(f"{self.who} raised an exception:\n{text}")

    def _no_answer(self, proc: subprocess.Popen[bytes], when: str) -> WorkerError:
        if proc.returncode is not None and proc.returncode < 0 and proc.returncode != -signal.SIGKILL:
            return _signal_failure(self.who, -proc.returncode, self.limits)
        return CodecFailure(f"{self.who} ended {when} (exit {proc.returncode}): {self.log.tail()}")


class _FrameReader:
    """Reads the child's frames off its pipe on a thread, refusing any kind or size it does not expect.

    PROGRESS frames go to `progress`, ended by None at the pipe's end; each must come after READY and
    before the answer, be 8 bytes, and count more frames than the last and at most the clip's."""

    def __init__(self, fd: int, max_output: int, frames_total: int) -> None:
        self.fd, self.max_output, self.pid, self.frames_total = fd, max_output, 0, frames_total
        self.frames: list[tuple[Kind, bytearray]] = []
        self.progress: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._done_so_far = 0
        self.peak_kib = 0  # the child's VmHWM, as last read while it lived
        self._peak_lock = threading.Lock()
        self.violation = ""
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, name="sandbox-frames", daemon=True)

    def start(self, pid: int) -> threading.Thread:
        self.pid = pid
        self._thread.start()
        return self._thread

    def first(self, timeout: float) -> tuple[Kind, bytearray] | None:
        with self._changed:
            self._changed.wait_for(lambda: self.frames or self._done, timeout)
            return self.frames[0] if self.frames and not self.violation else None

    def after_first(self) -> list[tuple[Kind, bytearray]]:
        return self.frames[1:]

    def join(self) -> None:
        self._thread.join()

    def sample_peak(self) -> None:
        """Read the child's high-water mark while it lives (it only grows): at each frame, as its answer begins
        (the child is still writing it), and every PEAK_SAMPLE_SECONDS. What it takes after answering is not
        counted."""
        kib = live_peak_rss_kib(self.pid) if self.pid else None
        if kib is not None:
            with self._peak_lock:
                self.peak_kib = max(self.peak_kib, kib)

    def _read(self) -> None:
        with os.fdopen(self.fd, "rb", buffering=0) as pipe:
            try:
                while not self.violation:
                    header = _read_exactly(pipe, FRAME_HEADER.size)
                    if header is None:
                        break
                    self.sample_peak()
                    self._take(pipe, *FRAME_HEADER.unpack(header))
                    if len(self.frames) > 2:  # READY and one answer: a third frame is the codec's own
                        self.violation = "wrote more than one answer: its code wrote to the result channel"
            finally:
                if self.violation:  # stop the child now rather than at the wall clock
                    with suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)
                self.progress.put(None)
                with self._changed:
                    self._done = True
                    self._changed.notify_all()

    def _take(self, pipe: IO[bytes], code: bytes, length: int) -> None:
        try:
            kind = Kind(code)
        except ValueError:
            self.violation = "wrote an unknown frame to the sandbox's result channel"
            return
        if kind is Kind.PROGRESS:
            self._take_progress(pipe, length)
            return
        cap = self.max_output if kind is Kind.OUTPUT else MAX_JSON_FRAME
        if length > cap:
            what = "its output" if kind is Kind.OUTPUT else f"a {kind.name} message"
            self.violation = f"announced {length} bytes of {what}, over the cap of {cap}"
            return
        body = _read_exactly(pipe, length)
        if body is None:  # killed while writing (a limit, say): its exit status tells why
            return
        with self._changed:
            self.frames.append((kind, body))
            self._changed.notify_all()

    def _take_progress(self, pipe: IO[bytes], length: int) -> None:
        if len(self.frames) != 1:
            self.violation = "sent a PROGRESS frame outside its run: its code wrote to the result channel"
            return
        if length != PROGRESS_BODY.size:
            self.violation = f"sent a PROGRESS frame of {length} bytes, not {PROGRESS_BODY.size}"
            return
        body = _read_exactly(pipe, length)
        if body is None:
            return
        (done,) = PROGRESS_BODY.unpack(body)
        if not self._done_so_far < done <= self.frames_total:
            self.violation = (
                f"reported {done} frames done after {self._done_so_far}, of {self.frames_total}: progress must "
                "rise and stay within the clip"
            )
            return
        self._done_so_far = done
        self.progress.put(done)


class _LogTail:
    """Keeps the last bytes the child printed, for error messages."""

    def __init__(self) -> None:
        self._tail = b""

    def start(self, stream: IO[bytes] | None) -> threading.Thread:
        thread = threading.Thread(target=self._read, args=(stream,), name="sandbox-log", daemon=True)
        thread.start()
        return thread

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        with stream:
            for chunk in iter(lambda: stream.read1(LOG_TAIL_BYTES), b""):  # type: ignore[attr-defined]
                self._tail = (self._tail + chunk)[-LOG_TAIL_BYTES:]

    def tail(self, limit: int = 2000) -> str:
        return _clean(self._tail[-limit:].decode("utf-8", "replace").strip())


def _read_exactly(pipe: IO[bytes], size: int) -> bytearray | None:
    """`size` bytes into one buffer (decoded frames can be a gigabyte: no second copy), or None at EOF."""
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        count = pipe.readinto(view[done:])  # type: ignore[attr-defined]
        if not count:
            return None
        done += count
    return buffer


def _write_quietly(stream: IO[bytes], data: bytes | bytearray, close: bool = False) -> None:
    """A child that died early closes its stdin: what it said (or its exit) tells why."""
    try:
        stream.write(data)
        stream.flush()
        if close:
            stream.close()
    except (BrokenPipeError, ValueError):
        pass


def _json(body: bytearray) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _clean(text: str, limit: int = 8000) -> str:
    """Child-written text, made safe to put in a record or a terminal."""
    return _CONTROL_CHARACTERS.sub("", text)[:limit]


def limit_hint(name: str) -> str:
    """Where to change one of the codec child's limits (see layers.codec_limits)."""
    cap = CODEC_CAPS[name]
    return f"raise limits.codec.{name} in the spec, up to the operator's cap {cap.env} (cdk.json's {cap.setting})"


def _signal_failure(who: str, signum: int, limits: SandboxLimits) -> WorkerError:
    reasons: dict[int, str] = {
        signal.SIGSYS: "made a forbidden system call (network, a new process, exec, ptrace, mount, a signal to "
        "another process...) and was killed",
        signal.SIGXCPU: f"used more than its {limits.cpu_seconds} CPU seconds; {limit_hint('cpu_seconds')}",
        signal.SIGKILL: f"was killed (CPU limit of {limits.cpu_seconds} s, or out of memory); "
        f"{limit_hint('cpu_seconds')} or memory_bytes",
        signal.SIGXFSZ: f"wrote a file larger than its limit of {limits.file_bytes} bytes",
    }
    if signum in reasons:
        return SandboxViolation(f"{who} {reasons[signum]}")
    return CodecFailure(f"{who} crashed with signal {signal.Signals(signum).name}")

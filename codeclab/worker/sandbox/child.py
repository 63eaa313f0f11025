"""The sandboxed child: `python -m codeclab.worker.sandbox.child`, driven over pipes (see protocol).

It reads its request and input, puts every layer in place while it is still one thread (threads
inherit the layers; threads started earlier would not), loads the allowed libraries under those
layers, reports READY, waits for the worker to check it from outside, and only then runs the
user's module. Until READY nothing of the user's has run, so what it reports is its own.
"""

from __future__ import annotations

import builtins
import errno
import importlib
import io
import os
import resource
import sys
import traceback
from pathlib import Path
from typing import Any, cast

from codeclab.worker.processes import die_with_parent
from codeclab.worker.sandbox import identity, import_view, landlock, scratch, seccomp_filter
from codeclab.worker.sandbox.context import CodecContext
from codeclab.worker.sandbox.landlock import Access, Rule
from codeclab.worker.sandbox.layers import Layer
from codeclab.worker.sandbox.protocol import (
    GO,
    MAX_REQUEST_LINE,
    RGB_FRAMES,
    YUV420_PLANES,
    ChildRequest,
    ErrorKind,
    Kind,
    send,
    send_json,
)
from codeclab.worker.sandbox.static_check import own_modules

USER_MODULE = "codec"
# Exit codes; the worker goes by the frames, these only label a child that could not send one.
OK, USER_ERROR, SETUP, POLICY, UNAVAILABLE = 0, 4, 5, 6, 7
# What the layers answer: Landlock and the uid (EACCES), seccomp's soft families (EPERM), read-only mounts.
WALLS = {errno.EACCES, errno.EPERM, errno.EROFS}
MAX_MESSAGE = 8_000  # characters: escaped as JSON it stays inside one ERROR frame


class Unavailable(Exception):
    """A required layer cannot be applied on this host."""

    def __init__(self, layer: Layer, reason: str) -> None:
        super().__init__(f"{layer.value}: {reason}")
        self.layer = layer


class OutputError(Exception):
    """The user's encode() or decode() returned something the worker cannot take."""


class ForbiddenImport(ImportError):
    """The import guard refused a module: a wall, unlike the user's own import errors."""


def main() -> int:
    worker = os.getppid()
    stdin = cast(io.BufferedReader, sys.stdin.buffer)
    request = ChildRequest.from_line(stdin.readline(MAX_REQUEST_LINE))
    payload = bytearray(request.payload_bytes)
    if stdin.readinto(payload) != request.payload_bytes:
        return _error(request.result_fd, ErrorKind.SETUP, "the worker's input ended early", SETUP)
    try:
        report = _build(request, worker)
    except Unavailable as exc:
        return _error(request.result_fd, ErrorKind.UNAVAILABLE, str(exc), UNAVAILABLE)
    except Exception as exc:  # no user code has run: the sandbox itself could not be built
        return _error(request.result_fd, ErrorKind.SETUP, f"{type(exc).__name__}: {exc}", SETUP)
    send_json(request.result_fd, Kind.READY, report)
    if stdin.read(1) != GO:  # the worker found a layer missing from outside
        return SETUP
    return _run_user_code(request, payload)


class _Report:
    """The READY report as the layers go in; a required layer that cannot go in ends the build."""

    def __init__(self, request: ChildRequest) -> None:
        self.wanted = {Layer(name) for name in (*request.required, *request.optional)}
        self.required = {Layer(name) for name in request.required}
        self.applied: dict[str, Any] = {}
        self.missing: dict[str, str] = {}

    def add(self, layer: Layer, detail: Any) -> None:
        self.applied[layer.value] = detail

    def lack(self, layer: Layer, reason: str) -> None:
        if layer in self.required:
            raise Unavailable(layer, reason)
        self.missing[layer.value] = reason

    def message(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "applied": self.applied, "missing": self.missing}


def _build(request: ChildRequest, worker: int) -> dict[str, Any]:
    """Every layer the request wants, in the one order that works; returns the READY report."""
    report = _Report(request)
    threads = len(list(Path("/proc/self/task").iterdir()))
    if threads != 1:
        raise RuntimeError(f"{threads} threads before the layers: each would escape them")
    private = _isolate(report)
    if Layer.SCRATCH in report.wanted:
        _cap_scratch(request, private, report)
    os.chdir(request.scratch)  # after the mount: the tmpfs, not the folder under it
    seccomp_ready = Layer.SECCOMP in report.wanted and _load_libseccomp(report)  # before Landlock hides it
    if Layer.RLIMITS in report.wanted:
        _set_limits(request)
    _drop_identity(request, report)
    die_with_parent(worker)  # after the uid change, which clears the setting: no codec outlives its wall clock
    if Layer.LANDLOCK in report.wanted:
        _restrict_files(request, report)
    elif Layer.SIGNAL_SCOPE in report.wanted:
        report.lack(Layer.SIGNAL_SCOPE, "it is part of Landlock, which is off")
    if seccomp_ready:
        seccomp_filter.install((seccomp_filter.Family(f) for f in request.seccomp), os.getpid())
        report.add(Layer.SECCOMP, sorted(request.seccomp))
    for name in request.preload:  # under every layer: threads these start inherit them
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise RuntimeError(f"the sandbox kept {name!r} from loading: {type(exc).__name__}: {exc}") from None
    return report.message()


def _isolate(report: _Report) -> bool:
    """Private namespaces where the kernel allows; whether this process now has a mount namespace of its own."""
    namespaces = Layer.NAMESPACES in report.wanted
    private = (namespaces or Layer.SCRATCH in report.wanted) and scratch.private_mounts()
    if not namespaces:
        return private
    if private and scratch.private_ipc_and_network():
        frozen, total = scratch.freeze_mounts()
        report.add(Layer.NAMESPACES, {"fresh": ["mnt", "ipc", "net"], "read_only_noatime": [frozen, total]})
    else:
        report.lack(Layer.NAMESPACES, "the kernel refused unshare() (no CAP_SYS_ADMIN, or a seccomp profile)")
    return private


def _load_libseccomp(report: _Report) -> bool:
    try:
        importlib.import_module("pyseccomp")
    except (ImportError, OSError) as exc:
        report.lack(Layer.SECCOMP, f"libseccomp cannot be loaded ({exc}); install libseccomp2")
        return False
    return True


def _cap_scratch(request: ChildRequest, private: bool, report: _Report) -> None:
    folder = Path(request.scratch)
    capped: scratch.Scratch | None
    if private:
        capped = scratch.mount_private_tmpfs(folder, request.scratch_bytes, request.file_uid)
    else:
        capped = scratch.host_tmpfs(folder, request.scratch_bytes)
    if capped is None:
        report.lack(
            Layer.SCRATCH,
            f"{folder} is not on a tmpfs of at most {request.scratch_bytes} bytes, and this host allows no private "
            "mount; set CODECLAB_SANDBOX_SCRATCH to such a tmpfs (the Batch job definition mounts one)",
        )
        return
    report.add(Layer.SCRATCH, {"how": capped.how, "bytes": capped.size_bytes})


def _set_limits(request: ChildRequest) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (request.cpu_seconds, request.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (request.file_bytes, request.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if request.address_space_bytes:  # off with CUDA, whose driver reserves huge virtual ranges
        resource.setrlimit(resource.RLIMIT_AS, (request.address_space_bytes, request.address_space_bytes))


def _drop_identity(request: ChildRequest, report: _Report) -> None:
    dropped = False
    if Layer.IDENTITY in report.wanted:
        if identity.can_change_uid():
            identity.become(identity.Identity(request.uid, request.file_uid))
            report.add(Layer.IDENTITY, {"uid": request.uid, "file_uid": request.file_uid})
            dropped = True
        else:
            report.lack(
                Layer.IDENTITY,
                "the worker is not root with CAP_SETUID and CAP_SETPCAP, so the child cannot get a uid of its own "
                "(run the worker as root, as the container image does)",
            )
    if Layer.PIDS in report.wanted:
        if dropped:  # the uid is the child's alone, so the count is its own threads
            resource.setrlimit(resource.RLIMIT_NPROC, (request.max_threads, request.max_threads))
            report.add(Layer.PIDS, request.max_threads)
        else:
            report.lack(Layer.PIDS, "RLIMIT_NPROC never binds uid 0 and counts every process of a shared uid")


def _restrict_files(request: ChildRequest, report: _Report) -> None:
    abi = landlock.abi_version()
    if abi == 0:
        report.lack(Layer.LANDLOCK, "this kernel has no Landlock (Linux 5.13+), or a seccomp profile hides it")
        return
    rules = [Rule(Path(path), Access(access)) for path, access in request.readable]
    rules.append(Rule(Path(request.scratch), Access.READ_WRITE))
    restricted = landlock.restrict(rules, abi, scope=Layer.SIGNAL_SCOPE in report.wanted)
    import_view.install([rule.path for rule in rules if rule.access is not Access.LIST])  # listing is not reading
    for path in request.hidden:
        _must_be_unreadable(Path(path))
    report.add(Layer.LANDLOCK, {"abi": abi, "tcp_denied": restricted.tcp_denied})
    if Layer.SIGNAL_SCOPE in report.wanted:
        if restricted.scoped:
            report.add(Layer.SIGNAL_SCOPE, {"abi": abi})
        else:
            report.lack(Layer.SIGNAL_SCOPE, f"Landlock ABI {abi} has no scopes (ABI 6, Linux 6.12+)")


def _must_be_unreadable(path: Path) -> None:
    """A copy of the source the child could still open is a hole: refuse to run."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (PermissionError, FileNotFoundError):
        return
    os.close(fd)
    raise Unavailable(
        Layer.LANDLOCK,
        f"the codec could still read {path}, a copy of the source inside a folder it must be able to read; move "
        "the clip elsewhere, or drop the allowed import whose package holds it",
    )


def _run_user_code(request: ChildRequest, payload: bytearray) -> int:
    package = request.package
    extra: tuple[Any, ...] = ()  # ctx, for a codec package
    try:
        _guard_imports(frozenset(request.allowed_imports), package.root if package else None)
        if package is None:
            module = _load_user_module(request.code)
        else:
            module = _load_package(package.root, package.entry)
            extra = (CodecContext(package, request.header, request.result_fd),)
        body = (_encode if request.role == "encode" else _decode)(module, request, payload, extra)
    except OutputError as exc:
        return _error(request.result_fd, ErrorKind.USER, str(exc), USER_ERROR)
    except MemoryError:
        message = "the codec ran out of its memory limit (limits.codec.memory_bytes in the spec)"
        return _error(request.result_fd, ErrorKind.POLICY, message, POLICY)
    except OSError as exc:
        if exc.errno not in WALLS:
            return _error(request.result_fd, ErrorKind.USER, _user_traceback(request), USER_ERROR)
        return _error(request.result_fd, ErrorKind.POLICY, f"the codec reached outside its sandbox: {exc}", POLICY)
    except ForbiddenImport as exc:
        return _error(request.result_fd, ErrorKind.POLICY, str(exc), POLICY)
    except Exception:  # the user's bug, an import error of their own included: their traceback
        return _error(request.result_fd, ErrorKind.USER, _user_traceback(request), USER_ERROR)
    send(request.result_fd, Kind.OUTPUT, body)
    return OK


def _guard_imports(allowed: frozenset[str], package_root: str | None) -> None:
    """Import statements in the codec's code, and in code it has evaluated, name only allowed modules.

    The importing frame decides, not the `__name__` in its globals (anyone can pass other globals
    to typing.get_type_hints). A convenience that names the line, not a wall: an allowed module's
    attributes (typing.sys.modules) reach modules without importing; the kernel layers hold there.
    A codec package's modules are codec code too; their relative imports stay inside the package.
    """
    real_import = builtins.__import__
    own = (package_root.rstrip("/") + "/") if package_root else None
    allowed = allowed | (own_modules(Path(package_root)) if package_root else frozenset())

    def guarded(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        filename = sys._getframe(1).f_code.co_filename
        library = filename.startswith("/") or filename.startswith("<frozen ")
        user = not library or bool(own and filename.startswith(own))
        if user and not level and name.split(".")[0] not in allowed and name not in allowed:
            raise ForbiddenImport(f"import of {name!r} is not allowed in codec code")
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded


def _load_user_module(source: str) -> Any:
    module = type(sys)(USER_MODULE)
    module.__file__ = "<codec>"
    exec(compile(source, "<codec>", "exec"), module.__dict__)  # the point of this process: contained, not trusted
    return module


def _load_package(root: str, entry: str) -> Any:
    sys.path.insert(0, root)  # readable through Landlock; the rest of sys.path is the allowed libraries
    module = importlib.import_module(entry)
    missing = [name for name in ("encode", "decode") if not callable(getattr(module, name, None))]
    if missing:
        raise OutputError(
            f"codec package entry module {entry!r} defines no {' or '.join(missing)}(); it must define "
            "encode(frames, params, ctx) and decode(bitstream, header, ctx)"
        )
    return module


def _encode(module: Any, request: ChildRequest, payload: bytearray, extra: tuple[Any, ...]) -> bytes:
    import numpy as np

    n, h, w = request.header.frames, request.header.height, request.header.width
    shapes = {"y": (n, h, w), "u": (n, h // 2, w // 2), "v": (n, h // 2, w // 2)}
    frames, offset = {}, 0
    for plane, shape in shapes.items():
        count = shape[0] * shape[1] * shape[2]
        frames[plane] = np.frombuffer(payload, np.uint8, count, offset).reshape(shape)
        offset += count
    bitstream = module.encode(frames, dict(request.params), *extra)
    if not isinstance(bitstream, bytes | bytearray):
        raise OutputError(f"encode() must return bytes, not {type(bitstream).__name__}")
    return bytes(bitstream)


def _decode(module: Any, request: ChildRequest, payload: bytearray, extra: tuple[Any, ...]) -> bytes:
    import numpy as np

    header = request.header
    decoded = module.decode(bytes(payload), {"width": header.width, "height": header.height,
                                             "frames": header.frames, "fps": header.fps}, *extra)  # fmt: skip
    n, h, w = header.frames, header.height, header.width
    if isinstance(decoded, dict) and "rgb" not in decoded:
        planes = {"y": (n, h, w), "u": (n, h // 2, w // 2), "v": (n, h // 2, w // 2)}
        for name, shape in planes.items():
            _expect(decoded.get(name), shape, f"plane {name}", np)
        return YUV420_PLANES + b"".join(np.ascontiguousarray(decoded[name]).tobytes() for name in planes)
    rgb = decoded["rgb"] if isinstance(decoded, dict) else decoded
    _expect(rgb, (n, h, w, 3), "RGB frames", np)
    return RGB_FRAMES + np.ascontiguousarray(rgb).tobytes()


def _expect(array: Any, shape: tuple[int, ...], what: str, np: Any) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
        got = "nothing" if not isinstance(array, np.ndarray) else f"{array.dtype} {array.shape}"
        raise OutputError(f"custom decoder returned {what} as {got}; expected uint8 {shape}")


def _user_traceback(request: ChildRequest) -> str:
    """The traceback trimmed to the user's own frames (inline code, or files of their package), with their lines."""
    kind, value, tb = sys.exc_info()
    lines_of_source = request.code.splitlines()
    own = request.package.root.rstrip("/") + "/" if request.package else None
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(tb):
        if not frame.lineno:
            continue
        if own and frame.filename.startswith(own):  # the package's files: linecache read them under Landlock
            lines.append(f'  File "{frame.filename[len(own) :]}", line {frame.lineno}, in {frame.name}\n')
            lines.append(f"    {(frame.line or '').strip()}\n")
        elif frame.filename == "<codec>":
            lines.append(f'  File "<codec>", line {frame.lineno}, in {frame.name}\n')
            if frame.lineno <= len(lines_of_source):
                lines.append(f"    {lines_of_source[frame.lineno - 1].strip()}\n")
    lines += traceback.format_exception_only(kind, value)
    return "".join(lines).strip()


def _error(fd: int, kind: ErrorKind, message: str, code: int) -> int:
    send_json(fd, Kind.ERROR, {"kind": kind.value, "message": message[:MAX_MESSAGE]})
    return code


if __name__ == "__main__":
    sys.exit(main())

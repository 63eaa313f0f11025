"""The sandboxed child: `python -m codeclab.worker.sandbox.child ROLE FOLDER`.

It sets its limits, drops to an unprivileged uid when started as root, installs seccomp,
and only then runs the user's module from FOLDER/codec.py. The encoder reads FOLDER/frames.npz
and writes FOLDER/bitstream.bin; the decoder reads bitstream.bin and header.json and writes
decoded.npz. The parent reads outcome.json (or, for a killed child, its exit signal).
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import resource
import stat
import sys
import traceback
from pathlib import Path
from typing import Any

USER_MODULE = "codec"
# Exit codes understood by the parent (codeclab.worker.sandbox.runner).
OK, USER_ERROR, POLICY, SETUP = 0, 4, 6, 7
SANDBOX_UID = 65534  # nobody
MAX_THREADS = 512
FORBIDDEN_SYSCALLS = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "kexec_load", "init_module",
    "finit_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
)  # fmt: skip
CLONE_THREAD = 0x00010000


def main(role: str, folder: Path) -> int:
    limits = json.loads((folder / "limits.json").read_text())
    os.chdir(folder)
    try:
        _preload([*limits["preload"], "pyseccomp", "codeclab.worker.sandbox.landlock"])
        _set_limits(limits)
        uid_dropped = _drop_privileges(folder)
        landlock_abi = _restrict_filesystem(folder)
        _install_seccomp()
        applied = {"seccomp": True, "landlock_abi": landlock_abi, "uid_dropped": uid_dropped, "rlimits": True}
        (folder / "sandbox.json").write_text(json.dumps(applied))
        _guard_imports(frozenset(limits["allowed_imports"]))
    except Exception as exc:  # no user code has run: the sandbox itself could not be built
        return _report(folder, SETUP, f"{type(exc).__name__}: {exc}")
    try:
        module = _load_user_module(folder / "codec.py")
        _encode(module, folder) if role == "encode" else _decode(module, folder)
    except MemoryError:
        return _report(folder, POLICY, "the codec ran out of its memory limit")
    except PermissionError as exc:  # Landlock: a path outside the private folder and the Python installation
        return _report(folder, POLICY, f"the codec reached outside its folder: {exc}")
    except ImportError as exc:
        return _report(folder, POLICY, str(exc))
    except Exception:
        return _report(folder, USER_ERROR, _user_traceback())
    return OK


def _preload(modules: list[str]) -> None:
    """Import the allowed heavy libraries before the filter: their own start-up may need anything."""
    for name in modules:
        importlib.import_module(name)


def _set_limits(limits: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("address_space_bytes"):  # off with CUDA, whose driver reserves huge virtual ranges
        resource.setrlimit(resource.RLIMIT_AS, (limits["address_space_bytes"], limits["address_space_bytes"]))


def _drop_privileges(folder: Path) -> bool:
    """As root, become nobody, so the worker's files (the reference above all) are out of reach."""
    if os.geteuid() != 0 or not python_readable_by_others():
        return False
    os.chown(folder, SANDBOX_UID, SANDBOX_UID)
    for child in folder.iterdir():
        os.chown(child, SANDBOX_UID, SANDBOX_UID)
    os.setgroups([])
    os.setgid(SANDBOX_UID)
    os.setuid(SANDBOX_UID)
    # as uid 65534 it owns no other process, so this caps its own threads (seccomp forbids new processes)
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_THREADS, MAX_THREADS))
    return True


def _restrict_filesystem(folder: Path) -> int:
    """The Landlock ABI applied; 0 where the kernel has none."""
    from codeclab.worker.sandbox import landlock

    return landlock.restrict(folder)


def python_readable_by_others() -> bool:
    """Whether uid 65534 could still import from this Python (not so under /root, say)."""
    for folder in (Path(os.__file__).parent, Path(importlib.__file__).parents[1]):
        for path in (folder, *folder.parents):
            if not path.stat().st_mode & stat.S_IXOTH:
                return False
    return True


def _install_seccomp() -> None:
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in FORBIDDEN_SYSCALLS:
        rules.add_rule(seccomp.KILL_PROCESS, name)
    # threads stay possible (numpy, torch); a new process does not
    rules.add_rule(seccomp.KILL_PROCESS, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(38), "clone3")  # ENOSYS: glibc falls back to clone, which is checked
    # signals only to itself: never to the worker or anything else of the same uid
    me = os.getpid()
    rules.add_rule(seccomp.KILL_PROCESS, "kill", seccomp.Arg(0, seccomp.NE, me))
    rules.add_rule(seccomp.KILL_PROCESS, "tgkill", seccomp.Arg(0, seccomp.NE, me))
    rules.load()


def _guard_imports(allowed: frozenset[str]) -> None:
    """At run time too: code from the user's module may import only allowed modules."""
    real_import = builtins.__import__

    def guarded(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        caller = (globals or {}).get("__name__")
        if caller == USER_MODULE and name.split(".")[0] not in allowed and name not in allowed:
            raise ImportError(f"import of {name!r} is not allowed in codec code")
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded


def _load_user_module(path: Path) -> Any:
    module = type(sys)(USER_MODULE)
    module.__file__ = "<codec>"
    code = compile(path.read_text(), "<codec>", "exec")
    exec(code, module.__dict__)  # the point of this process: it is contained, not trusted
    return module


def _encode(module: Any, folder: Path) -> None:
    import numpy as np

    with np.load(folder / "frames.npz", allow_pickle=False) as data:
        frames = {plane: data[plane] for plane in ("y", "u", "v")}
    params = json.loads((folder / "params.json").read_text())
    bitstream = module.encode(frames, params)
    if not isinstance(bitstream, bytes | bytearray):
        raise TypeError(f"encode() must return bytes, not {type(bitstream).__name__}")
    (folder / "bitstream.bin").write_bytes(bytes(bitstream))


def _decode(module: Any, folder: Path) -> None:
    import numpy as np

    header = json.loads((folder / "header.json").read_text())
    decoded = module.decode((folder / "bitstream.bin").read_bytes(), header)
    candidates = decoded if isinstance(decoded, dict) else {"rgb": decoded}
    # only real numeric arrays travel back: anything else would need pickle to load
    arrays = {k: v for k, v in candidates.items() if isinstance(v, np.ndarray) and v.dtype != object}
    np.savez(folder / "decoded.npz", **arrays)


def _user_traceback() -> str:
    """The traceback trimmed to the user's own frames, with their source lines."""
    kind, value, tb = sys.exc_info()
    source = (Path.cwd() / "codec.py").read_text().splitlines()
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(tb):
        if frame.filename != "<codec>" or not frame.lineno:
            continue
        lines.append(f'  File "<codec>", line {frame.lineno}, in {frame.name}\n')
        if frame.lineno <= len(source):
            lines.append(f"    {source[frame.lineno - 1].strip()}\n")
    lines += traceback.format_exception_only(kind, value)
    return "".join(lines).strip()


def _report(folder: Path, code: int, message: str) -> int:
    (folder / "outcome.json").write_text(json.dumps({"message": message}))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))

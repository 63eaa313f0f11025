"""The worker checks a child's layers from outside, in /proc, before letting any user code run.

The child's READY report comes before user code, so it cannot be forged by it; even so, what
/proc can show is checked there and not taken from the report: the seccomp mode, capabilities,
uids and no_new_privs of every thread, the rlimits, the namespaces and the scratch mount.
Landlock leaves no trace in /proc; its entry is the READY report's, checked against the ABI
this kernel offers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from codeclab.worker.sandbox import landlock, scratch
from codeclab.worker.sandbox.layers import Applied, Layer
from codeclab.worker.sandbox.protocol import ChildRequest

_CAPABILITY_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


class NotVerified(Exception):
    """/proc contradicts what the child reported."""


def verify(pid: int, request: ChildRequest, ready: Mapping[str, Any], trusted: bool) -> Applied:
    applied_report, missing_report = ready.get("applied"), ready.get("missing")
    claimed: dict[str, Any] = applied_report if isinstance(applied_report, dict) else {}
    reported_missing: dict[str, Any] = missing_report if isinstance(missing_report, dict) else {}
    threads = [_status(path) for path in sorted(Path(f"/proc/{pid}/task").glob("*/status"))]
    checks = {
        Layer.RLIMITS: lambda: _rlimits(pid, request),
        Layer.IDENTITY: lambda: _identity(threads, request),
        Layer.PIDS: lambda: _pids(pid, request),
        Layer.LANDLOCK: lambda: _landlock(claimed[Layer.LANDLOCK.value]),
        Layer.SIGNAL_SCOPE: lambda: (
            f"Landlock ABI {claimed[Layer.SIGNAL_SCOPE.value]['abi']}: signals and "
            "abstract unix sockets stay inside the child"
        ),
        Layer.SECCOMP: lambda: _seccomp(threads, request),
        Layer.NAMESPACES: lambda: _namespaces(pid, request),
        Layer.SCRATCH: lambda: _scratch(pid, request, claimed[Layer.SCRATCH.value]),
    }
    wanted = {Layer(name) for name in (*request.required, *request.optional)}
    applied: dict[str, str] = {}
    missing = {str(k)[:64]: str(v)[:500] for k, v in reported_missing.items()}
    for layer in sorted(wanted, key=list(Layer).index):
        if layer is not Layer.RLIMITS and layer.value not in claimed:
            missing.setdefault(layer.value, "not applied")
            continue
        try:
            applied[layer.value] = checks[layer]()
        except (NotVerified, KeyError, TypeError, ValueError, OSError) as exc:
            missing[layer.value] = f"reported, but not confirmed from outside: {exc}"
    return Applied(layers=applied, missing=missing, trusted=trusted)


def _status(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/PID/limits: name -> (soft, hard); the columns are aligned, the names have spaces."""
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): (row[26:47].strip(), row[47:68].strip()) for row in rows}


def _rlimits(pid: int, request: ChildRequest) -> str:
    limits = _limits(pid)
    expected = {
        "Max cpu time": str(request.cpu_seconds),
        "Max file size": str(request.file_bytes),
        "Max core file size": "0",
    }
    if request.address_space_bytes:
        expected["Max address space"] = str(request.address_space_bytes)
    for name, value in expected.items():
        if limits[name][0] != value:
            raise NotVerified(f"{name} is {limits[name][0]}, not {value}")
    space = f"{request.address_space_bytes} bytes of address space" if request.address_space_bytes else "no AS cap"
    return f"{request.cpu_seconds} CPU seconds, {request.file_bytes}-byte files, {space}, no core dumps"


def _identity(threads: list[dict[str, str]], request: ChildRequest) -> str:
    uids = f"{request.uid}\t{request.uid}\t{request.uid}\t{request.file_uid}"
    gids = "\t".join([str(request.uid)] * 4)
    for status in threads:
        if status["Uid"] != uids or status["Gid"] != gids or status["Groups"]:
            raise NotVerified(f"thread {status['Pid']} has uids {status['Uid']!r}, gids {status['Gid']!r}")
        if any(int(status[cap], 16) for cap in _CAPABILITY_FIELDS) or status["NoNewPrivs"] != "1":
            raise NotVerified(f"thread {status['Pid']} keeps capabilities or lacks no_new_privs")
    files = "its own" if request.file_uid == request.uid else f"{request.file_uid} (only root can read this Python)"
    return (
        f"a fresh uid and gid of its own, file-system uid {files}, no groups, no capabilities in any set, "
        "no_new_privs, on every thread"
    )


def _pids(pid: int, request: ChildRequest) -> str:
    soft, hard = _limits(pid)["Max processes"]
    if soft != hard or soft != str(request.max_threads):
        raise NotVerified(f"Max processes is {soft}/{hard}")
    return f"RLIMIT_NPROC {request.max_threads} threads, counted for the child's uid alone"


def _landlock(claim: Mapping[str, Any]) -> str:
    abi, kernel = int(claim["abi"]), landlock.abi_version()
    if not 1 <= abi <= kernel:
        raise NotVerified(f"ABI {abi} reported, the kernel offers {kernel}")
    tcp = ", no TCP bind or connect" if claim.get("tcp_denied") else ""
    return f"Landlock ABI {abi}: reads only the interpreter and allowed packages, writes only scratch{tcp}"


def _seccomp(threads: list[dict[str, str]], request: ChildRequest) -> str:
    for status in threads:
        if status.get("Seccomp") != "2":
            raise NotVerified(f"thread {status['Pid']} has seccomp mode {status.get('Seccomp')}")
    return f"filter mode on every thread; families: {', '.join(sorted(request.seccomp))}"


def _namespaces(pid: int, request: ChildRequest) -> str:
    for name in ("mnt", "ipc", "net"):
        if Path(f"/proc/{pid}/ns/{name}").stat().st_ino == Path(f"/proc/self/ns/{name}").stat().st_ino:
            raise NotVerified(f"the child shares the worker's {name} namespace")
    # the last mount at a path is the one on top; those under it cannot be reached
    on_top = {m[4]: m[5] for m in (line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines())}
    writable = [point for point, options in on_top.items()
                if point != request.scratch and not {"ro", "noatime"} <= set(options.split(","))]  # fmt: skip
    detail = "fresh mount, IPC and network namespaces"
    if writable:  # a mount the kernel would not remount stays as it was: say which, Landlock still guards it
        return f"{detail}; every mount read-only and noatime but {', '.join(writable[:5])}"
    return f"{detail}; every mount but the scratch tmpfs read-only and noatime"


def _scratch(pid: int, request: ChildRequest, claim: Mapping[str, Any]) -> str:
    if claim["how"] == "host tmpfs":
        capped = scratch.host_tmpfs(Path(request.scratch), request.scratch_bytes)
        if capped is None:
            raise NotVerified(f"{request.scratch} is not on a tmpfs of at most {request.scratch_bytes} bytes")
        return f"{request.scratch} on the host's tmpfs of {capped.size_bytes} bytes"
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        if fields[4] == request.scratch and fields[separator + 1] == "tmpfs":
            size = _tmpfs_size(fields[separator + 3])
            if size <= request.scratch_bytes:
                return f"a private tmpfs of {size} bytes over the child's folder"
            raise NotVerified(f"the scratch tmpfs holds {size} bytes")
    raise NotVerified("no tmpfs is mounted over the child's folder")


def _tmpfs_size(options: str) -> int:
    for option in options.split(","):
        if option.startswith("size="):
            value = option[5:]
            units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
            return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)
    raise NotVerified("the scratch tmpfs has no size limit")
